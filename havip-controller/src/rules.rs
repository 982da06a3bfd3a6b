//! The product rules that need no store and are the API's alone: search
//! matching. The rules every record holds to are `havip_schema`'s.

use crate::views::Havip;

/// Fuzzy search: every whitespace-separated word of `q` occurs,
/// case-insensitively, in the name, description, id or address.
pub fn matches_query(vip: &Havip, q: &str) -> bool {
    let haystack = format!(
        "{}\n{}\n{}\n{}",
        vip.name, vip.description, vip.id, vip.address
    )
    .to_lowercase();
    q.split_whitespace()
        .all(|word| haystack.contains(&word.to_lowercase()))
}
