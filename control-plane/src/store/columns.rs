//! What proxies report, as stored: the bounds on reported names and counts, counts ↔ `BIGINT`
//! columns, and the multi-row upserts both usage and quota accounting write them with.

use std::fmt::Write as _;

use super::Backend;

/// The longest route, consumer or quota name accepted from a proxy, in bytes (a consumer may be
/// a JWT `sub`).
pub const MAX_KEY_BYTES: usize = 256;
/// The largest count, byte total or latency sum (µs: 285 years) accepted in one reported entry
/// (2^53: exact in a JSON number), so sums of many entries stay far from the 64-bit limit of
/// the columns.
pub const MAX_VALUE: u64 = 1 << 53;
/// Rows per multi-row upsert (at most 8 parameters each: far below SQLite's and PostgreSQL's
/// limits).
pub const ROWS_PER_STATEMENT: usize = 200;

/// A count as stored (checked counts are far below `i64::MAX`).
pub fn to_column(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored count (never negative unless the database was edited by hand).
pub fn from_column(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// `head (…), (…), … tail` for `rows` rows of `columns` placeholders, bound in order.
///
/// PostgreSQL gets numbered placeholders (`$1, $2, …`). SQLite gets anonymous ones (`?`):
/// sqlx looks up the name of every numbered parameter it binds, which SQLite answers by a
/// linear scan of the statement's names, so a 1,200-parameter upsert spent more time binding
/// than running. Anonymous parameters have no name to scan.
pub fn multi_row_insert(
    backend: Backend,
    head: &str,
    columns: usize,
    rows: usize,
    tail: &str,
) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * columns * 6);
    sql.push_str(head);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            let separator = if column == 0 { "" } else { ", " };
            match backend {
                Backend::Postgres => {
                    let _ = write!(sql, "{separator}${}", row * columns + column + 1);
                }
                Backend::Sqlite => {
                    sql.push_str(separator);
                    sql.push('?');
                }
            }
        }
        sql.push(')');
    }
    sql.push_str(tail);
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_inserts_number_their_placeholders() {
        let sql = |backend| {
            multi_row_insert(
                backend,
                "INSERT INTO t (a, b) VALUES ",
                2,
                3,
                " ON CONFLICT DO NOTHING",
            )
        };
        assert_eq!(
            sql(Backend::Postgres),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            sql(Backend::Sqlite),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?), (?, ?) ON CONFLICT DO NOTHING"
        );
    }

    #[test]
    fn counts_saturate_into_columns() {
        assert_eq!(to_column(u64::MAX), i64::MAX);
        assert_eq!(from_column(-1), 0);
        assert_eq!(from_column(to_column(7)), 7);
    }
}
