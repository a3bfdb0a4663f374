//! `webclip`: the native command. Embeds images and texts into a safetensors file,
//! classifies images against labels, writes random checkpoints of real shapes, and runs
//! the benchmarks. Errors go to stderr with exit status 1 (2 for usage errors).

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    std::process::exit(cli::main());
}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use std::path::{Path, PathBuf};
    use std::time::Instant;
    use webclip::clip::{BackendChoice, Clip, ClipOptions, Embeddings, ModelFolder};
    use webclip::gpu::{GpuOptions, WeightPrecision};
    use webclip::model::safetensors::{write_f32, Dtype};
    use webclip::model::{random, ClipConfig, Family, Towers};
    use webclip::{ClipError, ImageInput};

    const USAGE: &str = "\
usage:
  webclip embed --model DIR [--weights FILE] [--backend cpu|gpu|auto] [--gpu-weights f32|f16|auto] [--threads N] [--image FILE]... [--text STRING]... --out FILE.safetensors
      image_features [images, proj] and text_features [texts, proj] (float32, projected, before
      L2 normalisation, in argument order) into a safetensors file
  webclip classify --model DIR --labels \"cat,dog,...\" [--template \"a photo of a {}\"] [--top N] [--backend ...] [--gpu-weights ...] IMAGE...
      the top labels with their scores, per image: CLIP's softmax over the labels, SigLIP's
      sigmoid per label (independent: they need not sum to 1)
  webclip gen-weights (--preset NAME | --config config.json) --out DIR [--seed N] [--dtype f32|f16|bf16]
      a checkpoint folder in the Hugging Face layout with random weights of real shapes
      (presets: vit-b-32, vit-b-16, vit-l-14, vit-l-14-336, siglip-b16-224, siglip-so400m-p14-384,
      siglip2-b16-224, siglip2-b16-256, siglip2-b32-256, siglip2-l16-256, siglip2-so400m-p14-384,
      siglip2-so400m-p16-256, siglip2-so400m-p16-384, siglip2-so400m-p16-512)
  webclip convert --model DIR --dtype f16|int8 --out DIR2 [--towers both|vision|text] [--group N|row]
      a compact copy of a float checkpoint folder: int8 matrices with a scale per group of N
      (default 64) input features (or per row), the rest f16; or everything f16. Config,
      tokenizer and preprocessor files are copied
  webclip convert --report --model DIR [--image FILE]... [--text STRING]... [--group N|row] [--backend ...]
      file and per-tower sizes of f32, f16 and int8, and the embedding cosine and zero-shot
      top-1 agreement of f16 and int8 to f32 over the images and texts (default: the folder's
      golden.json lists, with images from ../images)
  webclip bench [--backend cpu|gpu] [--preset vit-b-32[,siglip2-b16-224,...]] [--batches 1,32] [--iterations N] [--threads N] [--gpu-weights ...] [--tensor-cores on|off] [--weights f32|int8]
      latency and matmul GFLOP/s on random weights of a real shape (--threads on the CPU;
      --batches, --iterations, --gpu-weights and --tensor-cores for the GPU: the f16 matmul
      runs on tensor cores where the adapter has cooperative matrices, unless off); several presets are run one
      after the other and their encoder latencies printed side by side; --weights int8 adds
      the image encoder on int8 weights next to f32 (ms per image, bytes held after load, and
      its pass by operation)

--threads N: threads of the CPU backend (default 0: every core).

--gpu-weights: how the GPU backend stores matrices (default f32; f16 halves GPU memory and
bandwidth, cosine > 0.9999 to f32; auto: f16 when the adapter offers shader-f16); the CPU
backend ignores it.

DIR is a Hugging Face CLIP or SigLIP repository folder: config.json, model.safetensors, the
tokenizer (tokenizer.json, or SigLIP's spiece.model, with tokenizer_config.json when there
is one), preprocessor_config.json (the family's defaults when absent).";

    /// A usage mistake (exit 2) or a failure (exit 1).
    enum Failure {
        Usage(String),
        Run(ClipError),
    }

    impl From<ClipError> for Failure {
        fn from(e: ClipError) -> Self {
            Failure::Run(e)
        }
    }

    type CliResult<T> = Result<T, Failure>;

    pub fn main() -> i32 {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let result = match args.first().map(String::as_str) {
            Some("embed") => embed(&args[1..]),
            Some("classify") => classify(&args[1..]),
            Some("gen-weights") => gen_weights(&args[1..]),
            Some("convert") => convert(&args[1..]),
            Some("bench") => bench(&args[1..]),
            Some("index") => return webclip::index::cli::main(&args[1..]),
            Some("to-parquet") => return webclip::index::cli::to_parquet_main(&args[1..]),
            Some("-h" | "--help" | "help") => {
                println!("{USAGE}\n\n{}", webclip::index::cli::USAGE);
                Ok(())
            }
            Some(other) => Err(Failure::Usage(format!("unknown command `{other}`"))),
            None => Err(Failure::Usage("no command given".into())),
        };
        match result {
            Ok(()) => 0,
            Err(Failure::Usage(msg)) => {
                eprintln!(
                    "webclip: {msg}\n\n{USAGE}\n\n{}",
                    webclip::index::cli::USAGE
                );
                2
            }
            Err(Failure::Run(e)) => {
                eprintln!("webclip: error: {e}");
                1
            }
        }
    }

    /// `--flag value` pairs (repeatable) and positional arguments.
    struct Args {
        flags: Vec<(String, String)>,
        positional: Vec<String>,
    }

    impl Args {
        fn parse(args: &[String], known: &[&str]) -> CliResult<Args> {
            let mut flags = Vec::new();
            let mut positional = Vec::new();
            let mut it = args.iter();
            while let Some(a) = it.next() {
                if let Some(name) = a.strip_prefix("--") {
                    if !known.contains(&name) {
                        return Err(Failure::Usage(format!("unknown option `{a}`")));
                    }
                    let v = it
                        .next()
                        .ok_or_else(|| Failure::Usage(format!("`{a}` needs a value")))?;
                    flags.push((name.to_string(), v.clone()));
                } else {
                    positional.push(a.clone());
                }
            }
            Ok(Args { flags, positional })
        }
        fn all(&self, name: &str) -> Vec<&str> {
            self.flags
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .collect()
        }
        fn get(&self, name: &str) -> Option<&str> {
            self.all(name).last().copied()
        }
        fn need(&self, name: &str) -> CliResult<&str> {
            self.get(name)
                .ok_or_else(|| Failure::Usage(format!("--{name} is required")))
        }
    }

    fn read(path: &Path) -> Result<Vec<u8>, ClipError> {
        std::fs::read(path).map_err(|e| ClipError::file("cannot read", path, e))
    }

    fn create(path: &Path) -> Result<std::fs::File, ClipError> {
        std::fs::File::create(path).map_err(|e| ClipError::file("cannot create", path, e))
    }

    /// `--gpu-weights`: f32 unless asked (the library's default; results match the CPU
    /// backend to 1e-3).
    fn gpu_weights(args: &Args) -> CliResult<WeightPrecision> {
        let v = args.get("gpu-weights").unwrap_or("f32");
        WeightPrecision::parse(v).map_err(|_| {
            Failure::Usage(format!("--gpu-weights must be f32, f16 or auto, not `{v}`"))
        })
    }

    /// The flags `load_model` reads.
    const MODEL_FLAGS: &[&str] = &["model", "weights", "backend", "gpu-weights", "threads"];

    /// Load a model folder with the towers the command needs.
    fn load_model(args: &Args, towers: Towers) -> CliResult<Clip> {
        let dir = PathBuf::from(args.need("model")?);
        let backend = BackendChoice::parse(args.get("backend").unwrap_or("cpu"))?;
        let weights_precision = gpu_weights(args)?;
        let folder = ModelFolder::read(&dir, args.get("weights").map(Path::new))?;
        let options = ClipOptions {
            backend,
            towers,
            gpu: GpuOptions {
                weights: weights_precision,
                ..Default::default()
            },
            threads: threads(args)?,
            ..Default::default()
        };
        Ok(pollster::block_on(folder.load(&options))?)
    }

    fn backend_summary(clip: &Clip) -> String {
        let b = clip.backend();
        match &b.adapter {
            Some(adapter) => match b.weights {
                Some(w) => format!("{} ({adapter}, {w} weights)", b.kind),
                None => format!("{} ({adapter})", b.kind),
            },
            None => b.kind.to_string(),
        }
    }

    fn embed(raw: &[String]) -> CliResult<()> {
        let args = Args::parse(raw, &[MODEL_FLAGS, &["image", "text", "out"]].concat())?;
        let out = PathBuf::from(args.need("out")?);
        if !args.positional.is_empty() {
            return Err(Failure::Usage(format!(
                "unexpected argument `{}`",
                args.positional[0]
            )));
        }
        let images: Vec<&str> = args.all("image");
        let texts: Vec<&str> = args.all("text");
        let towers = match (images.is_empty(), texts.is_empty()) {
            (false, true) => Towers::Vision,
            (true, false) => Towers::Text,
            _ => Towers::Both,
        };
        let start = Instant::now();
        let mut clip = load_model(&args, towers)?;
        let loaded = start.elapsed();
        let image_bytes = images
            .iter()
            .map(|p| read(Path::new(p)))
            .collect::<Result<Vec<_>, _>>()?;
        let inputs: Vec<ImageInput> = image_bytes.iter().map(|b| ImageInput::Encoded(b)).collect();
        let t0 = Instant::now();
        let image_features = if towers.vision() {
            pollster::block_on(clip.image_features(&inputs)).map_err(|e| name_image(e, &images))?
        } else {
            Embeddings {
                rows: 0,
                dim: clip.config.projection_dim,
                data: vec![],
            }
        };
        let text_features = if towers.text() {
            pollster::block_on(clip.text_features(&texts))?
        } else {
            Embeddings {
                rows: 0,
                dim: clip.config.projection_dim,
                data: vec![],
            }
        };
        let compute = t0.elapsed();
        let dim = clip.config.projection_dim;
        let spec = vec![
            ("image_features".to_string(), vec![image_features.rows, dim]),
            ("text_features".to_string(), vec![text_features.rows, dim]),
        ];
        let file = create(&out)?;
        write_f32(
            std::io::BufWriter::new(file),
            &spec,
            Dtype::F32,
            |i, buf| {
                buf.extend_from_slice(if i == 0 {
                    &image_features.data
                } else {
                    &text_features.data
                });
                Ok(())
            },
        )?;
        println!(
            "embedded {} images and {} texts (dim {dim}) on {} in {:.3} s (model load {:.3} s) -> {}",
            image_features.rows,
            text_features.rows,
            backend_summary(&clip),
            compute.as_secs_f64(),
            loaded.as_secs_f64(),
            out.display()
        );
        Ok(())
    }

    /// Turn "image 3: ..." into "photo.jpg: ..." for the command's user.
    fn name_image(e: ClipError, paths: &[&str]) -> ClipError {
        if let ClipError::Image(msg) = &e {
            if let Some(rest) = msg.strip_prefix("image ") {
                if let Some((idx, tail)) = rest.split_once(": ") {
                    if let Some(p) = idx.parse::<usize>().ok().and_then(|i| paths.get(i)) {
                        return ClipError::Image(format!("{p}: {tail}"));
                    }
                }
            } else if paths.len() == 1 {
                return ClipError::Image(format!("{}: {msg}", paths[0]));
            }
        }
        e
    }

    fn classify(raw: &[String]) -> CliResult<()> {
        let args = Args::parse(raw, &[MODEL_FLAGS, &["labels", "template", "top"]].concat())?;
        let labels: Vec<String> = args
            .need("labels")?
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if labels.is_empty() {
            return Err(Failure::Usage("--labels holds no label".into()));
        }
        let template = args.get("template").unwrap_or("a photo of a {}");
        let top: usize = match args.get("top") {
            Some(v) => v
                .parse()
                .map_err(|_| Failure::Usage(format!("--top expects a number, not `{v}`")))?,
            None => 5,
        };
        if args.positional.is_empty() {
            return Err(Failure::Usage("no image given".into()));
        }
        let mut clip = load_model(&args, Towers::Both)?;
        let prompts: Vec<String> = labels.iter().map(|l| template.replace("{}", l)).collect();
        let prompt_refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        let text = pollster::block_on(clip.text_features(&prompt_refs))?;
        let paths: Vec<&str> = args.positional.iter().map(String::as_str).collect();
        for path in &paths {
            let bytes = read(Path::new(path))?;
            let image = pollster::block_on(clip.image_features(&[ImageInput::Encoded(&bytes)]))
                .map_err(|e| name_image(e, &[path]))?;
            let probs = clip.probabilities(&clip.logits(&image, &text));
            let mut order: Vec<usize> = (0..labels.len()).collect();
            order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
            let shown: Vec<String> = order
                .iter()
                .take(top)
                .map(|&i| format!("{} {}", labels[i], score(probs[i])))
                .collect();
            println!("{path}: {}", shown.join(", "));
        }
        Ok(())
    }

    /// A probability with three decimals, or two significant digits below 0.001 (SigLIP's
    /// sigmoid scores of unrelated labels are that small).
    fn score(p: f32) -> String {
        if p != 0.0 && p < 1e-3 {
            format!("{p:.1e}")
        } else {
            format!("{p:.3}")
        }
    }

    /// The CLIP tokenizer (data, as in every CLIP repository), so generated folders are complete.
    const CLIP_TOKENIZER: &[u8] = include_bytes!("../../data/clip-tokenizer.json");

    fn gen_weights(raw: &[String]) -> CliResult<()> {
        let args = Args::parse(raw, &["preset", "config", "out", "seed", "dtype"])?;
        let config = match (args.get("preset"), args.get("config")) {
            (Some(p), None) => ClipConfig::preset(p)?,
            (None, Some(path)) => ClipConfig::from_json(&read(Path::new(path))?)?,
            _ => {
                return Err(Failure::Usage(
                    "give exactly one of --preset or --config".into(),
                ))
            }
        };
        let seed: u64 = match args.get("seed") {
            Some(v) => v
                .parse()
                .map_err(|_| Failure::Usage(format!("--seed expects a number, not `{v}`")))?,
            None => 0,
        };
        let dtype = match args.get("dtype").unwrap_or("f32") {
            "f32" => Dtype::F32,
            "f16" => Dtype::F16,
            "bf16" => Dtype::BF16,
            other => {
                return Err(Failure::Usage(format!(
                    "--dtype must be f32, f16 or bf16, not `{other}`"
                )))
            }
        };
        let out = PathBuf::from(args.need("out")?);
        std::fs::create_dir_all(&out).map_err(|e| ClipError::file("cannot create", &out, e))?;
        let write = |name: &str, bytes: &[u8]| -> Result<(), ClipError> {
            let path = out.join(name);
            std::fs::write(&path, bytes).map_err(|e| ClipError::file("cannot write", &path, e))
        };
        write("config.json", config.to_json().as_bytes())?;
        let s = config.vision_config.image_size;
        let preprocessor = match config.family {
            Family::Clip => {
                write("tokenizer.json", CLIP_TOKENIZER)?;
                serde_json::json!({
                    "crop_size": {"height": s, "width": s}, "do_center_crop": true, "do_convert_rgb": true,
                    "do_normalize": true, "do_rescale": true, "do_resize": true,
                    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_processor_type": "CLIPImageProcessor",
                    "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3,
                    "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": s}
                })
            }
            // SigLIP's tokenizers (a 32,000-piece spiece.model, Gemma's 256,000-entry
            // tokenizer.json) are the checkpoint's own data: take them from the real repository.
            Family::Siglip => {
                println!(
                    "note: no tokenizer written: copy spiece.model (SigLIP) or tokenizer.json and \
                     tokenizer_config.json (SigLIP 2) from the real checkpoint to embed texts; \
                     token ids work without one"
                );
                serde_json::json!({
                    "do_normalize": true, "do_rescale": true, "do_resize": true,
                    "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "SiglipImageProcessor",
                    "image_std": [0.5, 0.5, 0.5], "resample": 2,
                    "rescale_factor": 0.00392156862745098, "size": {"height": s, "width": s}
                })
            }
        };
        write(
            "preprocessor_config.json",
            preprocessor.to_string().as_bytes(),
        )?;
        let path = out.join("model.safetensors");
        let file = create(&path)?;
        let start = Instant::now();
        random::write_random_weights(std::io::BufWriter::new(file), &config, seed, dtype)?;
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!(
            "wrote {} ({:.1} MiB, {}, seed {seed}) in {:.1} s",
            out.display(),
            size as f64 / (1 << 20) as f64,
            dtype.name(),
            start.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// `--group N|row`: input features per int8 scale.
    fn group(args: &Args) -> CliResult<usize> {
        match args.get("group") {
            None => Ok(webclip::model::quantize::DEFAULT_GROUP),
            Some("row") => Ok(0),
            Some(v) => v.parse().map_err(|_| {
                Failure::Usage(format!("--group expects a number or `row`, not `{v}`"))
            }),
        }
    }

    fn convert(raw: &[String]) -> CliResult<()> {
        use webclip::model::quantize::{convert_folder, Compact};
        let mut raw = raw.to_vec();
        let report = match raw.iter().position(|a| a == "--report") {
            Some(i) => {
                raw.remove(i);
                true
            }
            None => false,
        };
        let args = Args::parse(
            &raw,
            &[
                "model", "dtype", "out", "towers", "group", "image", "text", "backend",
            ],
        )?;
        let dir = PathBuf::from(args.need("model")?);
        let group = group(&args)?;
        if report {
            return convert_report(&args, &dir, group);
        }
        let dtype = Compact::parse(args.need("dtype")?)?;
        let towers = Towers::parse(args.get("towers").unwrap_or("both"))?;
        let out = PathBuf::from(args.need("out")?);
        let start = Instant::now();
        let done = convert_folder(&dir, &out, dtype, towers, group)?;
        let src = std::fs::metadata(dir.join("model.safetensors")).map_or(0, |m| m.len());
        println!(
            "wrote {} ({} tensors, {:.2} MiB, {:.1} % of the source) in {:.1} s",
            out.display(),
            done.tensors,
            done.bytes as f64 / (1 << 20) as f64,
            100.0 * done.bytes as f64 / src.max(1) as f64,
            start.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// `convert --report`: the fidelity table of one float folder.
    fn convert_report(args: &Args, dir: &Path, group: usize) -> CliResult<()> {
        let folder = ModelFolder::read(dir, None)?;
        let (mut images, mut texts): (Vec<PathBuf>, Vec<String>) = (
            args.all("image").iter().map(PathBuf::from).collect(),
            args.all("text").iter().map(|s| s.to_string()).collect(),
        );
        if images.is_empty() || texts.is_empty() {
            let golden: serde_json::Value =
                serde_json::from_slice(&read(&dir.join("golden.json"))?)
                    .map_err(|e| ClipError::Input(format!("golden.json: {e}")))?;
            let list = |k: &str| -> Vec<String> {
                golden[k]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            if images.is_empty() {
                // The fixtures keep their images one or two levels up, in `images/`.
                let base = [dir.join("../images"), dir.join("../../images")]
                    .into_iter()
                    .find(|p| p.is_dir())
                    .unwrap_or_else(|| dir.join("images"));
                images = list("images").iter().map(|f| base.join(f)).collect();
            }
            if texts.is_empty() {
                texts = list("texts");
            }
        }
        let bytes: Vec<Vec<u8>> = images.iter().map(|p| read(p)).collect::<Result<_, _>>()?;
        let inputs: Vec<ImageInput> = bytes.iter().map(|b| ImageInput::Encoded(b)).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let options = ClipOptions {
            backend: BackendChoice::parse(args.get("backend").unwrap_or("cpu"))?,
            ..Default::default()
        };
        let rows = pollster::block_on(webclip::bench::fidelity::report(
            folder.files(),
            &folder.weights,
            &options,
            group,
            &inputs,
            &texts,
        ))?;
        println!(
            "{} ({} images, {} texts, int8 {}):\n",
            dir.display(),
            inputs.len(),
            texts.len(),
            webclip::model::quantize::Scheme { group }.name()
        );
        print!("{}", webclip::bench::fidelity::table(&rows));
        Ok(())
    }

    /// With more than one preset, their encoder latencies next to each other.
    fn print_side_by_side(all: &[webclip::bench::Latencies]) {
        if all.len() > 1 {
            println!("## Encoders side by side (best ms)\n");
            print!("{}", webclip::bench::side_by_side(all));
        }
    }

    /// `--threads N` of the CPU backend (0 or absent: every core).
    fn threads(args: &Args) -> CliResult<usize> {
        match args.get("threads") {
            None => Ok(0),
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n <= webclip::cpu::pool::MAX_THREADS => Ok(n),
                _ => Err(Failure::Usage(format!(
                    "--threads expects a number of threads from 0 (every core) to {}, not `{v}`",
                    webclip::cpu::pool::MAX_THREADS
                ))),
            },
        }
    }

    fn bench(raw: &[String]) -> CliResult<()> {
        let args = Args::parse(
            raw,
            &[
                "backend",
                "preset",
                "batches",
                "iterations",
                "gpu-weights",
                "tensor-cores",
                "threads",
                "weights",
            ],
        )?;
        let disable_tensor_cores = match args.get("tensor-cores").unwrap_or("on") {
            "on" => false,
            "off" => true,
            v => {
                return Err(Failure::Usage(format!(
                    "--tensor-cores must be on or off, not `{v}`"
                )))
            }
        };
        let int8 = match args.get("weights").unwrap_or("f32") {
            "f32" => false,
            "int8" => true,
            w => {
                return Err(Failure::Usage(format!(
                    "--weights must be f32 or int8, not `{w}`"
                )))
            }
        };
        let presets: Vec<String> = args
            .get("preset")
            .unwrap_or("vit-b-32")
            .split(',')
            .map(|p| p.trim().to_string())
            .collect();
        for p in &presets {
            ClipConfig::preset(p)?;
        }
        let number = |flag: &str, v: &str| -> CliResult<usize> {
            v.trim()
                .parse()
                .map_err(|_| Failure::Usage(format!("--{flag} expects numbers, not `{v}`")))
        };
        match args.get("backend").unwrap_or("cpu") {
            "cpu" => {
                if ["batches", "iterations", "gpu-weights", "tensor-cores"]
                    .iter()
                    .any(|f| args.get(f).is_some())
                {
                    return Err(Failure::Usage(
                        "--batches, --iterations, --gpu-weights and --tensor-cores are for --backend gpu"
                            .into(),
                    ));
                }
                let mut all = Vec::new();
                for p in &presets {
                    all.push(webclip::bench::cpu::run_bench(
                        p,
                        threads(&args)?,
                        int8,
                        &mut std::io::stdout(),
                    )?);
                    println!();
                }
                print_side_by_side(&all);
                Ok(())
            }
            "gpu" | "webgpu" => {
                let mut opts = webclip::bench::gpu::BenchOptions {
                    gpu: GpuOptions {
                        weights: gpu_weights(&args)?,
                        disable_tensor_cores,
                        ..Default::default()
                    },
                    int8,
                    ..Default::default()
                };
                if let Some(b) = args.get("batches") {
                    opts.image_batches = b
                        .split(',')
                        .map(|v| number("batches", v))
                        .collect::<CliResult<_>>()?;
                }
                if let Some(n) = args.get("iterations") {
                    opts.iterations = number("iterations", n)?;
                }
                let mut all = Vec::new();
                for p in &presets {
                    opts.preset = p.clone();
                    all.push(webclip::bench::gpu::run_bench(&opts)?);
                    println!();
                }
                print_side_by_side(&all);
                Ok(())
            }
            other => Err(Failure::Usage(format!(
                "--backend must be cpu or gpu, not `{other}`"
            ))),
        }
    }
}
