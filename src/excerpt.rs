//! Bounded quotes of request-controlled text: a value from a request (a name, a label, a
//! serde message about the body) goes into an answer or a log line as an excerpt, so a
//! 4 MiB string never becomes a 4 MiB answer. Beneath every decision and the admission
//! pipeline, which all quote what they were sent.

/// At most this many bytes of a request-controlled value in an answer or a log line.
pub const EXCERPT_BYTES: usize = 160;

/// `text` whole when short; otherwise its start and end around a note of what was cut,
/// so a 4 MiB string never becomes a 4 MiB error answer or log line.
pub fn excerpt(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= EXCERPT_BYTES {
        return text.into();
    }
    let head = floor_char_boundary(text, EXCERPT_BYTES * 2 / 3);
    let tail = ceil_char_boundary(text, text.len() - EXCERPT_BYTES / 3);
    format!(
        "{}…({} bytes cut)…{}",
        &text[..head],
        tail - head,
        &text[tail..]
    )
    .into()
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn ceil_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}
