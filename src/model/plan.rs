//! What a download of `model.safetensors` needs for the requested towers: the header,
//! then the byte ranges of that tower's tensors, adjacent ones merged (one Range request
//! each). The JS layer fetches these ranges; `WeightBytes` then serves them to the loader.

use super::safetensors::SafeTensors;
use super::weights::Towers;

/// The parts of a safetensors file one load reads, from its parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightPlan {
    /// Bytes the header occupies from the start of the file (8 + JSON).
    pub header_len: usize,
    /// The least number of bytes a complete file holds.
    pub data_end: usize,
    /// `[start, end)` absolute file offsets, sorted, disjoint and not touching.
    pub ranges: Vec<(usize, usize)>,
}

impl WeightPlan {
    /// The ranges of the tensors `towers` uses (tensors of neither tower, such as
    /// `logit_scale`, are always read); empty tensors need no bytes. The scales of an int8
    /// checkpoint (`{name}_scale`, `model::quantize`) share their matrix's name prefix, so
    /// a tower's plan takes its scales and no other tower's.
    pub fn new(header: &SafeTensors, towers: Towers) -> WeightPlan {
        let mut wanted: Vec<(usize, usize)> = header
            .tensors()
            .filter(|t| towers.wants(&t.name) && t.end > t.start)
            .map(|t| (t.start, t.end))
            .collect();
        wanted.sort_unstable();
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for (s, e) in wanted {
            match ranges.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => ranges.push((s, e)),
            }
        }
        WeightPlan {
            header_len: header.data_start,
            data_end: header.data_end,
            ranges,
        }
    }

    /// Bytes the plan reads: the header and every range.
    pub fn total_bytes(&self) -> usize {
        self.header_len + self.ranges.iter().map(|(s, e)| e - s).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::safetensors::{write_f32, Dtype};

    /// A file with the tensors in this order (the writer lays them out back to back).
    fn header(tensors: &[(&str, usize)]) -> SafeTensors {
        let spec: Vec<_> = tensors
            .iter()
            .map(|(n, len)| (n.to_string(), vec![*len]))
            .collect();
        let mut out = Vec::new();
        write_f32(&mut out, &spec, Dtype::F32, |i, buf| {
            buf.resize(tensors[i].1, 0.5);
            Ok(())
        })
        .unwrap();
        SafeTensors::parse(&out).unwrap()
    }

    #[test]
    fn one_tower_reads_its_tensors_and_the_shared_ones_merged() {
        // Bytes: vision 0..8, text 8..24, logit 24..28, vision 28..32, empty text, text 32..36.
        let st = header(&[
            ("vision_model.a", 2),
            ("text_model.a", 4),
            ("logit_scale", 1),
            ("visual_projection.weight", 1),
            ("text_model.empty", 0),
            ("text_projection.weight", 1),
        ]);
        let at = |name: &str| {
            let t = st.get(name).unwrap();
            (t.start, t.end)
        };
        let vision = WeightPlan::new(&st, Towers::Vision);
        assert_eq!(
            vision.ranges,
            vec![
                at("vision_model.a"),
                (at("logit_scale").0, at("visual_projection.weight").1)
            ]
        );
        let text = WeightPlan::new(&st, Towers::Text);
        assert_eq!(
            text.ranges,
            vec![
                (at("text_model.a").0, at("logit_scale").1),
                at("text_projection.weight")
            ]
        );
        // Both towers: everything, one range.
        let both = WeightPlan::new(&st, Towers::Both);
        assert_eq!(both.ranges, vec![(st.data_start, st.data_end)]);
        assert_eq!(both.header_len, st.data_start);
        assert_eq!(both.data_end, st.data_end);
        assert_eq!(both.total_bytes(), st.data_end);
        assert_eq!(vision.total_bytes(), st.data_start + 8 + 4 + 4);
    }

    #[test]
    fn int8_scales_travel_with_their_tower() {
        use crate::model::quantize::scale_name;
        let names = [
            "vision_model.encoder.layers.0.mlp.fc1.weight",
            "visual_projection.weight",
            "text_model.embeddings.token_embedding.weight",
            "text_projection.weight",
        ];
        let mut tensors: Vec<(String, usize)> = Vec::new();
        for n in names {
            tensors.push((n.to_string(), 4));
            tensors.push((scale_name(n), 1));
        }
        let spec: Vec<(&str, usize)> = tensors.iter().map(|(n, l)| (n.as_str(), *l)).collect();
        let st = header(&spec);
        for (towers, mine) in [(Towers::Vision, &names[..2]), (Towers::Text, &names[2..])] {
            let plan = WeightPlan::new(&st, towers);
            for n in names {
                for t in [n.to_string(), scale_name(n)] {
                    let info = st.get(&t).unwrap();
                    let read = plan
                        .ranges
                        .iter()
                        .any(|&(s, e)| s <= info.start && info.end <= e);
                    assert_eq!(read, mine.contains(&n), "{towers:?}: {t}");
                }
            }
        }
    }

    #[test]
    fn a_file_without_tensors_needs_only_its_header() {
        let st = header(&[]);
        let plan = WeightPlan::new(&st, Towers::Both);
        assert!(plan.ranges.is_empty());
        assert_eq!(plan.total_bytes(), plan.header_len);
        assert_eq!(plan.data_end, plan.header_len);
    }
}
