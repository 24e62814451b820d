//! How a poll reads on from the cursor: the pure planner of its `search_read` calls.
//!
//! Odoo shows `write_date` to the second and compares it at full precision, so a page in
//! `write_date, id` order holds every change of each second before its last one: those are
//! taken, and the next page starts at that last second. A full page of one second (a second
//! of at least `page_size` changes) is read on by id within the second (`W <= write_date <
//! W+1`, `id > L`), then the seconds after it. No I/O here: [`super::poll`] asks Odoo and
//! gives each page to [`step`].

use serde_json::{Value, json};

use super::cursor::Cursor;
use crate::odoo::time::from_seconds;

/// One read of a poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// The changes from this second on, ordered by `write_date, id`.
    From(i64),
    /// The changes of this second with an id above `after`, ordered by id.
    InSecond {
        /// The second.
        second: i64,
        /// The last id read in it.
        after: i64,
    },
}

impl Query {
    /// Its `search_read` domain, in Odoo's prefix notation.
    pub fn domain(&self) -> Value {
        match *self {
            Self::From(second) => json!([["write_date", ">=", from_seconds(second)]]),
            Self::InSecond { second, after } => json!([
                "&",
                "&",
                ["write_date", ">=", from_seconds(second)],
                ["write_date", "<", from_seconds(second + 1)],
                ["id", ">", after]
            ]),
        }
    }

    /// Its `search_read` order.
    pub fn order(&self) -> &'static str {
        match self {
            Self::From(_) => "write_date asc, id asc",
            Self::InSecond { .. } => "id asc",
        }
    }
}

/// What a page read by a [`Query`] means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// How many of the page's changes (from its start) to deliver now; the others are read
    /// again by `next`.
    pub deliver: usize,
    /// Where the cursor may move once those are durable (`None`: it stays).
    pub position: Option<Cursor>,
    /// What to read next in this poll (`None`: the poll is over).
    pub next: Option<Query>,
}

/// The step after `query` read `page`: each change's `(second, id)` in the page's order, at
/// most `page_size` of them.
pub fn step(query: &Query, page: &[(i64, i64)], page_size: usize) -> Step {
    let full = page.len() >= page_size;
    match *query {
        Query::From(_) => {
            let (Some(&(first, _)), Some(&(last, _))) = (page.first(), page.last()) else {
                return Step {
                    deliver: 0,
                    position: None,
                    next: None,
                };
            };
            let top = |second| {
                let ids = page.iter().filter(|(s, _)| *s == second).map(|(_, id)| *id);
                ids.max().unwrap_or(0)
            };
            if !full {
                // Everything from the start on: the poll is over, the last second stays open.
                Step {
                    deliver: page.len(),
                    position: Some(Cursor::at(last, top(last))),
                    next: None,
                }
            } else if first < last {
                // The seconds before the last are whole in the page; the last may not be.
                Step {
                    deliver: page.iter().take_while(|(s, _)| *s < last).count(),
                    position: Some(Cursor::at(last, 0)),
                    next: Some(Query::From(last)),
                }
            } else {
                // A full page of one second: read it by id.
                Step {
                    deliver: 0,
                    position: Some(Cursor::at(last, 0)),
                    next: Some(Query::InSecond {
                        second: last,
                        after: 0,
                    }),
                }
            }
        }
        Query::InSecond { second, after } => {
            let last = page.last().map_or(after, |&(_, id)| id);
            Step {
                deliver: page.len(),
                position: Some(Cursor::at(second, last)),
                next: Some(if full {
                    Query::InSecond {
                        second,
                        after: last,
                    }
                } else {
                    Query::From(second + 1)
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: i64 = 1_717_200_000;

    /// Runs a whole poll from `start` over `changes` (`(instant in µs, id)`, as Odoo orders
    /// them): the changes delivered, in order, and the cursor at the end.
    fn poll(start: i64, changes: &[(i64, i64)], page_size: usize) -> (Vec<i64>, Option<Cursor>) {
        let mut sorted = changes.to_vec();
        sorted.sort();
        let (mut delivered, mut position, mut query) = (Vec::new(), None, Some(Query::From(start)));
        let mut reads = 0;
        while let Some(q) = query {
            reads += 1;
            assert!(reads < 1000, "the poll goes on forever");
            let second = |us: i64| us.div_euclid(1_000_000);
            let mut page: Vec<(i64, i64)> = match q {
                Query::From(s) => sorted
                    .iter()
                    .filter(|(us, _)| second(*us) >= s)
                    .copied()
                    .collect(),
                Query::InSecond { second: s, after } => {
                    let mut p: Vec<_> = sorted
                        .iter()
                        .filter(|(us, id)| second(*us) == s && *id > after)
                        .copied()
                        .collect();
                    p.sort_by_key(|(_, id)| *id);
                    p
                }
            };
            page.truncate(page_size);
            let page: Vec<(i64, i64)> = page.iter().map(|(us, id)| (second(*us), *id)).collect();
            let step = step(&q, &page, page_size);
            delivered.extend(page[..step.deliver].iter().map(|(_, id)| *id));
            position = step.position.or(position);
            query = step.next;
        }
        (delivered, position)
    }

    #[test]
    fn a_second_of_more_than_a_page_is_read_whole_by_id() {
        // 26 changes in one second, written in an order unlike their ids, then one later.
        let mut changes: Vec<(i64, i64)> = (1..=26)
            .map(|id| (W * 1_000_000 + 250_000 + (id * 7919) % 26, id))
            .collect();
        changes.push(((W + 3) * 1_000_000 + 10, 27));
        let (delivered, at) = poll(W - 10, &changes, 7);
        let mut sorted = delivered.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            (1..=27).collect::<Vec<_>>(),
            "each once: {delivered:?}"
        );
        assert_eq!(at, Some(Cursor::at(W + 3, 27)));
        // The next poll reads the open second again, and nothing else.
        let (again, at) = poll(W + 3, &changes, 7);
        assert_eq!((again, at), (vec![27], Some(Cursor::at(W + 3, 27))));
    }

    #[test]
    fn a_page_boundary_inside_a_second_loses_nothing() {
        // Seconds of 3, 1 and 2 changes, pages of 2.
        let changes = [
            (W * 1_000_000 + 5, 4),
            (W * 1_000_000 + 6, 1),
            (W * 1_000_000 + 9, 2),
            ((W + 1) * 1_000_000, 3),
            ((W + 2) * 1_000_000 + 1, 6),
            ((W + 2) * 1_000_000 + 2, 5),
        ];
        let (delivered, at) = poll(W, &changes, 2);
        let mut sorted = delivered.clone();
        sorted.sort();
        assert_eq!(sorted, vec![1, 2, 3, 4, 5, 6], "{delivered:?}");
        assert_eq!(at, Some(Cursor::at(W + 2, 6)));
    }

    #[test]
    fn a_poll_with_nothing_new_keeps_the_cursor() {
        assert_eq!(poll(W, &[], 5), (vec![], None));
        let s = step(
            &Query::InSecond {
                second: W,
                after: 9,
            },
            &[],
            5,
        );
        assert_eq!(s.position, Some(Cursor::at(W, 9)));
        assert_eq!(s.next, Some(Query::From(W + 1)));
    }

    #[test]
    fn queries_are_odoo_domains_of_whole_seconds() {
        assert_eq!(
            Query::From(0).domain(),
            json!([["write_date", ">=", "1970-01-01 00:00:00"]])
        );
        let q = Query::InSecond {
            second: 59,
            after: 12,
        };
        assert_eq!(
            q.domain(),
            json!([
                "&",
                "&",
                ["write_date", ">=", "1970-01-01 00:00:59"],
                ["write_date", "<", "1970-01-01 00:01:00"],
                ["id", ">", 12]
            ])
        );
        assert_eq!(q.order(), "id asc");
    }
}
