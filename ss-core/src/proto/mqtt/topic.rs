//! Topic names, topic filters and matching (MQTT 3.1.1 §4.7).

use super::MqttError;

/// Whether `topic` (a topic name) matches `filter` (a subscription filter).
///
/// `+` matches exactly one level (possibly empty), `#` as the last level
/// matches that level's parent and everything below it. Topics starting with
/// `$` (e.g. `$SYS/...`) are not matched by a filter whose first level is a
/// wildcard (§4.7.2). Malformed filters (a `#` not alone in the last level,
/// a `+` sharing its level) match nothing.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if filter.is_empty() || topic.is_empty() {
        return false;
    }
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return f.next().is_none(),
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) => {
                if fl.contains(['+', '#']) || fl != tl {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Checks a topic name for PUBLISH: non-empty, at most `max_len` bytes, no
/// wildcards, no NUL.
pub fn validate_topic(topic: &str, max_len: usize) -> Result<(), MqttError> {
    if topic.is_empty() {
        return Err(MqttError::InvalidTopic("empty topic".into()));
    }
    if topic.len() > max_len.min(super::MAX_TOPIC_LEN) {
        return Err(MqttError::InvalidTopic(format!(
            "topic of {} bytes exceeds {}",
            topic.len(),
            max_len.min(super::MAX_TOPIC_LEN)
        )));
    }
    if topic.contains(['+', '#', '\0']) {
        return Err(MqttError::InvalidTopic(
            "topic name holds a wildcard or NUL".into(),
        ));
    }
    Ok(())
}

/// Checks a subscription filter: non-empty, at most `max_len` bytes, no NUL,
/// `+` alone in its level, `#` alone in the last level.
pub fn validate_filter(filter: &str, max_len: usize) -> Result<(), MqttError> {
    if filter.is_empty() {
        return Err(MqttError::InvalidTopic("empty filter".into()));
    }
    if filter.len() > max_len.min(super::MAX_TOPIC_LEN) {
        return Err(MqttError::InvalidTopic(format!(
            "filter of {} bytes exceeds {}",
            filter.len(),
            max_len.min(super::MAX_TOPIC_LEN)
        )));
    }
    if filter.contains('\0') {
        return Err(MqttError::InvalidTopic("filter holds NUL".into()));
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !last) {
            return Err(MqttError::InvalidTopic(
                "'#' must be alone in the last level".into(),
            ));
        }
        if level.contains('+') && level != "+" {
            return Err(MqttError::InvalidTopic(
                "'+' must be alone in its level".into(),
            ));
        }
    }
    Ok(())
}
