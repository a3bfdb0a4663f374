// The demo page: copies the query parameters onto <webclip-tagger>, then defines the element.
//   index.html?model=URL&backend=cpu&labels=cat,dog&threshold=0.2
// `model` also loads it at once, so a link (or a test) opens the page on a given checkpoint.

const params = new URLSearchParams(location.search);
const tagger = document.getElementById('tagger');
const model = params.get('model');
if (model) {
  tagger.setAttribute('model', model);
  tagger.setAttribute('autoload', '');
}
for (const name of ['backend', 'labels', 'templates', 'top', 'threshold']) {
  if (params.has(name)) tagger.setAttribute(name, params.get(name));
}
if (params.has('autoload')) tagger.setAttribute('autoload', '');

// Attributes first, then the element: it reads them when it connects.
await import('./webclip-tagger.js');
