//! Near-duplicate groups: the connected components of "cosine >= threshold" over the
//! stored rows (so a chain of near-copies is one group).
//!
//! Up to [`EXACT_UP_TO`] rows every pair is compared. Above that, candidate pairs come from
//! random-hyperplane locality-sensitive hashing (Charikar 2002, "SimHash"): [`TABLES`]
//! tables of [`BITS`]-bit signatures, hyperplanes through the rows' mean (CLIP embeddings
//! sit in a narrow cone, so planes through the origin would all cut the same way); only
//! rows sharing a signature in some table are compared, each candidate pair with the
//! store's own score. Two rows at angle θ share a bit with probability 1 - θ/π, so a pair
//! at cosine 0.95 shares one table's signature with p ≈ 0.28 and is missed by all 12 with
//! p ≈ 0.02 (0.98: 0.0008), before the chaining of groups recovers some of those.

use super::VectorStore;

/// Below this many rows (allowed rows) the groups are exact.
pub const EXACT_UP_TO: usize = 4096;
pub const TABLES: usize = 12;
pub const BITS: usize = 12;

struct UnionFind(Vec<u32>);

impl UnionFind {
    fn find(&mut self, mut x: u32) -> u32 {
        while self.0[x as usize] != x {
            let p = self.0[x as usize];
            self.0[x as usize] = self.0[p as usize];
            x = p;
        }
        x
    }
    fn union(&mut self, a: u32, b: u32) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a.max(b) as usize] = a.min(b);
        }
    }
}

impl VectorStore {
    /// Groups of at least two slots whose rows are near-duplicates (cosine >= `threshold`,
    /// chained), among the slots in `allow` when given. Each group is sorted by slot; the
    /// groups are ordered by their first slot.
    pub fn duplicate_groups(&self, threshold: f32, allow: Option<&[u32]>) -> Vec<Vec<usize>> {
        let slots: Vec<usize> = (0..self.len())
            .filter(|&s| {
                allow.is_none_or(|m| m.get(s / 32).is_some_and(|w| w >> (s % 32) & 1 == 1))
            })
            .collect();
        let mut uf = UnionFind((0..self.len() as u32).collect());
        if slots.len() <= EXACT_UP_TO {
            for (i, &a) in slots.iter().enumerate() {
                for &b in &slots[i + 1..] {
                    if self.pair_score(a, b) >= threshold {
                        uf.union(a as u32, b as u32);
                    }
                }
            }
        } else {
            self.lsh_pairs(&slots, threshold, &mut uf);
        }
        let mut groups: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
        for &s in &slots {
            groups.entry(uf.find(s as u32)).or_default().push(s);
        }
        groups.into_values().filter(|g| g.len() > 1).collect()
    }

    fn lsh_pairs(&self, slots: &[usize], threshold: f32, uf: &mut UnionFind) {
        let d = self.dim();
        let rows: Vec<Vec<f32>> = slots.iter().map(|&s| self.decode(s)).collect();
        let mut mean = vec![0f32; d];
        for r in &rows {
            mean.iter_mut().zip(r).for_each(|(m, x)| *m += x);
        }
        mean.iter_mut().for_each(|m| *m /= rows.len() as f32);
        // Gaussian-ish planes from a fixed seed: the same library groups the same way.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // The sum of 4 uniforms is close enough to normal for the sign test.
            (0..4)
                .map(|i| ((seed >> (16 * i)) & 0xffff) as f32 / 65536.0 - 0.5)
                .sum::<f32>()
        };
        let planes: Vec<f32> = (0..TABLES * BITS * d).map(|_| next()).collect();
        let mut centred = vec![0f32; d];
        let mut sigs = vec![0u16; TABLES * rows.len()];
        for (i, r) in rows.iter().enumerate() {
            centred
                .iter_mut()
                .zip(r.iter().zip(&mean))
                .for_each(|(c, (x, m))| *c = x - m);
            for t in 0..TABLES {
                let mut sig = 0u16;
                for b in 0..BITS {
                    let p = &planes[(t * BITS + b) * d..(t * BITS + b + 1) * d];
                    if super::scan::dot_f32(&centred, p) >= 0.0 {
                        sig |= 1 << b;
                    }
                }
                sigs[t * rows.len() + i] = sig;
            }
        }
        let n = rows.len();
        let mut order: Vec<u32> = (0..n as u32).collect();
        for t in 0..TABLES {
            let sig = &sigs[t * n..(t + 1) * n];
            order.sort_unstable_by_key(|&i| sig[i as usize]);
            let mut start = 0;
            while start < n {
                let key = sig[order[start] as usize];
                let mut end = start + 1;
                while end < n && sig[order[end] as usize] == key {
                    end += 1;
                }
                let bucket = &order[start..end];
                for (x, &i) in bucket.iter().enumerate() {
                    for &j in &bucket[x + 1..] {
                        let (a, b) = (slots[i as usize], slots[j as usize]);
                        if uf.find(a as u32) != uf.find(b as u32)
                            && self.pair_score(a, b) >= threshold
                        {
                            uf.union(a as u32, b as u32);
                        }
                    }
                }
                start = end;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::rand_vecs;
    use super::super::{Precision, VectorStore};
    use super::EXACT_UP_TO;

    /// `n` random rows, then near-copies of rows 0..copies (noise of relative size 0.1:
    /// cosine ≈ 0.99 to their original) appended.
    fn library(n: usize, copies: usize, dim: usize) -> Vec<f32> {
        let mut data = rand_vecs(n, dim, 5);
        let noise = rand_vecs(copies, dim, 77);
        for c in 0..copies {
            let copy: Vec<f32> = (0..dim)
                .map(|j| data[c * dim + j] + 0.1 * noise[c * dim + j])
                .collect();
            data.extend(copy);
        }
        data
    }

    fn check(n: usize, copies: usize, min_found: usize) {
        let dim = 48;
        let data = library(n, copies, dim);
        let mut st = VectorStore::new(dim, Precision::F16).unwrap();
        st.push_many(&data).unwrap();
        let groups = st.duplicate_groups(0.95, None);
        // Random 48-d rows are far apart (|cos| < 0.7): every group is one planted pair.
        let found = groups
            .iter()
            .filter(|g| g.len() == 2 && g[1] == n + g[0])
            .count();
        assert_eq!(
            found,
            groups.len(),
            "a group that is no planted pair: {groups:?}"
        );
        assert!(found >= min_found, "{found} of {copies} pairs found");
    }

    #[test]
    fn exact_groups_find_every_planted_pair() {
        check(1000, 50, 50);
    }

    #[test]
    fn hashed_groups_find_nearly_every_planted_pair() {
        // Above EXACT_UP_TO rows: LSH. A pair at cosine ~0.99 is missed with p < 1e-4.
        const { assert!(5000 + 200 > EXACT_UP_TO) };
        check(5000, 200, 198);
    }

    #[test]
    fn allow_list_limits_groups() {
        let dim = 48;
        let data = library(100, 10, dim);
        let mut st = VectorStore::new(dim, Precision::I8).unwrap();
        st.push_many(&data).unwrap();
        // Only rows 0..100: no copy is allowed, so no group.
        let mut mask = vec![0u32; 4];
        for s in 0..100 {
            mask[s / 32] |= 1 << (s % 32);
        }
        assert!(st.duplicate_groups(0.95, Some(&mask)).is_empty());
        assert_eq!(st.duplicate_groups(0.95, None).len(), 10);
    }
}
