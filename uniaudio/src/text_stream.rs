//! Text as it is generated: each new id's piece of the detokenised text, held back while
//! it ends in an incomplete UTF-8 sequence (byte-level BPE splits characters across ids).

use uniaudio_lm::tokenizer::TextTokenizer;

/// Incremental detokenisation of generated ids.
pub struct TextStream<'t> {
    tokenizer: &'t TextTokenizer,
    ids: Vec<u32>,
    emitted: usize,
}

impl<'t> TextStream<'t> {
    /// An empty stream over `tokenizer`.
    pub fn new(tokenizer: &'t TextTokenizer) -> Self {
        TextStream { tokenizer, ids: Vec::new(), emitted: 0 }
    }

    /// Adds `id`; returns the text that became final with it (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        self.ids.push(id);
        let Ok(text) = self.tokenizer.decode(&self.ids) else { return String::new() };
        if text.ends_with('\u{FFFD}') || text.len() < self.emitted || !text.is_char_boundary(self.emitted) {
            return String::new();
        }
        let piece = text[self.emitted..].to_string();
        self.emitted = text.len();
        piece
    }

    /// What is left to emit once no more ids come (a held-back incomplete character).
    pub fn finish(&mut self) -> String {
        let text = self.text();
        let rest = if text.is_char_boundary(self.emitted) && text.len() >= self.emitted { text[self.emitted..].to_string() } else { String::new() };
        self.emitted = text.len();
        rest
    }

    /// The whole text of the ids pushed so far.
    pub fn text(&self) -> String {
        self.tokenizer.decode(&self.ids).unwrap_or_default()
    }
}
