//! The peer harness's deterministic content (`bench.mjs`): the same PRNG (mulberry32), the same
//! words, the same entry shapes, so both sides write the same text.

pub(crate) const WORDS: [&str; WORD_COUNT] = [
    "morning", "coffee", "walked", "river", "quiet", "city", "notes", "thought", "today", "plan",
    "friend", "rain", "window", "book", "train", "meeting", "garden", "wrote", "slowly",
    "remember", "weekend", "light", "tired", "happy", "music", "dinner", "idea", "small", "list",
    "call", "mother", "work", "project", "long", "road",
];

pub(crate) const WORD_COUNT: usize = 35;

/// mulberry32, bit for bit as the peer's `prng(seed)`.
#[derive(Debug, Clone)]
pub(crate) struct Prng(u32);

impl Prng {
    pub(crate) fn new(seed: u32) -> Self {
        Self(seed)
    }

    pub(crate) fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x6d2b_79f5);
        let mut t = self.0;
        t = (t ^ (t >> 15)).wrapping_mul(t | 1);
        t ^= t.wrapping_add((t ^ (t >> 7)).wrapping_mul(t | 61));
        f64::from(t ^ (t >> 14)) / 4_294_967_296.0
    }

    /// `Math.floor(rand() * n)`.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let index = (self.next_f64() * n as f64).floor() as usize;
        index.min(n.saturating_sub(1))
    }

    /// The peer's `text(rand, bytes)`: words, sometimes a full stop, cut to `bytes` (all ASCII).
    pub(crate) fn text(&mut self, bytes: usize) -> String {
        let mut out = String::with_capacity(bytes + 16);
        while out.len() < bytes {
            out.push_str(WORDS[self.below(WORD_COUNT)]);
            out.push_str(if self.next_f64() < 0.1 { ". " } else { " " });
        }
        out.truncate(bytes);
        out
    }
}

/// One W1 entry and its edits, generated in the peer's order.
#[derive(Debug, Clone)]
pub(crate) struct EntryPlan {
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
    /// `(position, text)` splices into the body, in order; positions in chars.
    pub edits: Vec<(usize, String)>,
    /// The body after every edit.
    pub final_body: String,
    /// The tags after every edit (edit 3 pushes `tag-3`).
    pub final_tags: Vec<String>,
}

/// Plans entry `i` of a run (the caller keeps one PRNG for the whole run, as the peer does).
pub(crate) fn plan_entry(rand: &mut Prng, i: usize, k: usize, body_bytes: usize) -> EntryPlan {
    let title = format!("Journal entry {i}: {}", rand.text(30).trim());
    let body = rand.text(body_bytes);
    let tags = vec!["journal".to_owned(), WORDS[i % WORD_COUNT].to_owned()];
    let mut current: Vec<char> = body.chars().collect();
    let mut edits = Vec::with_capacity(k);
    let mut final_tags = tags.clone();
    for edit in 1..=k {
        let insert = format!(" [edit {edit}: {}]", rand.text(12).trim());
        let position = rand.below(current.len().max(1)).min(current.len());
        current.splice(position..position, insert.chars());
        edits.push((position, insert));
        if edit == 3 {
            final_tags.push(format!("tag-{edit}"));
        }
    }
    EntryPlan {
        title,
        body,
        tags,
        edits,
        final_body: current.into_iter().collect(),
        final_tags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mulberry32_matches_the_peer() {
        // node -e 'prng(42)' from bench.mjs: the first three draws.
        let mut rand = Prng::new(42);
        let first: Vec<f64> = (0..3).map(|_| rand.next_f64()).collect();
        assert!(
            (first[0] - 0.601_103_751_920_163_6).abs() < 1e-12,
            "{first:?}"
        );
        assert!(
            (first[1] - 0.448_290_558_997_541_67).abs() < 1e-12,
            "{first:?}"
        );
        assert!(
            (first[2] - 0.852_465_793_490_409_9).abs() < 1e-12,
            "{first:?}"
        );
    }

    #[test]
    fn plans_apply_their_edits() {
        let mut rand = Prng::new(7);
        let plan = plan_entry(&mut rand, 3, 5, 1024);
        assert_eq!(plan.body.len(), 1024);
        assert_eq!(plan.edits.len(), 5);
        assert_eq!(
            plan.final_body.len(),
            1024 + plan.edits.iter().map(|(_, text)| text.len()).sum::<usize>()
        );
        assert_eq!(plan.final_tags.len(), 3);
    }
}
