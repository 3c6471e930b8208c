//! TODO (being written on the runtime branch)

/// Placeholder until the runtime branch lands.
pub fn mask_url_credentials(s: &str) -> String {
    s.to_string()
}
