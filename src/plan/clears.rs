//! The attribute-wipe guard: one attribute cleared on many managed users at once is far more
//! often a mistake (a misspelled source attribute, a source that stopped sending it) than a
//! decision, so those clears wait for `sync --allow-clears`, as deprovisions wait for
//! `--allow-deletes`.

use super::{Hold, UserOp};
use crate::ids::SourceId;
use std::collections::BTreeMap;

/// Clears of one attribute are held only when at least this many users would lose it.
pub(crate) const MIN_CLEARS: usize = 10;

/// Holds the clears of every attribute that the updates would clear on more than `percent`
/// of the `managed` users (and at least [`MIN_CLEARS`]). Each held change leaves its update,
/// whose desired resource keeps the old value, so that the snapshot goes on recording what
/// the target holds and the next cycle holds the clear again; an update left with no change
/// is dropped. Returns the holds and, per held attribute, the users it spares.
pub(crate) fn hold_clears(
    ops: &mut Vec<UserOp>,
    managed: usize,
    percent: f64,
) -> (Vec<Hold>, BTreeMap<String, Vec<SourceId>>) {
    let mut clears: BTreeMap<String, usize> = BTreeMap::new();
    for op in ops.iter() {
        if let UserOp::Update { changes, .. } = op {
            for c in changes
                .iter()
                .filter(|c| c.old.is_some() && c.new.is_none())
            {
                *clears.entry(c.path.clone()).or_default() += 1;
            }
        }
    }
    let limit = percent * managed as f64 / 100.0;
    let held: BTreeMap<String, usize> = clears
        .into_iter()
        .filter(|(_, n)| *n >= MIN_CLEARS && *n as f64 > limit)
        .collect();
    let mut spared: BTreeMap<String, Vec<SourceId>> = BTreeMap::new();
    if held.is_empty() {
        return (Vec::new(), spared);
    }
    ops.retain_mut(|op| {
        let UserOp::Update {
            id,
            changes,
            desired,
            ..
        } = op
        else {
            return true;
        };
        changes.retain(|c| {
            let hold = c.new.is_none() && held.contains_key(&c.path);
            if let (true, Some(old)) = (hold, &c.old) {
                desired.attrs.insert(c.path.clone(), old.clone());
                spared.entry(c.path.clone()).or_default().push(id.clone());
            }
            !hold
        });
        !changes.is_empty()
    });
    let holds = held
        .into_iter()
        .map(|(attribute, count)| Hold::AttributeClear {
            attribute,
            count,
            managed,
            percent,
        })
        .collect();
    (holds, spared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ScimId;
    use crate::mapping::Desired;
    use crate::plan::Change;
    use serde_json::json;

    fn update(i: usize, clear: bool) -> UserOp {
        let mut changes = vec![Change {
            path: "title".into(),
            old: Some(json!("Old")),
            new: Some(json!("New")),
        }];
        if clear {
            changes.push(Change {
                path: "department".into(),
                old: Some(json!("R&D")),
                new: None,
            });
        }
        UserOp::Update {
            id: SourceId(format!("u{i}")),
            scim_id: ScimId(format!("s{i}")),
            changes,
            desired: Desired::default(),
        }
    }

    #[test]
    fn a_mass_clear_is_held_and_the_other_changes_go() {
        let mut ops: Vec<UserOp> = (0..12).map(|i| update(i, true)).collect();
        let (holds, spared) = hold_clears(&mut ops, 20, 25.0);
        assert_eq!(
            holds,
            [Hold::AttributeClear {
                attribute: "department".into(),
                count: 12,
                managed: 20,
                percent: 25.0
            }]
        );
        assert_eq!(spared["department"].len(), 12);
        assert_eq!(ops.len(), 12, "the title changes still go");
        for op in &ops {
            let UserOp::Update {
                changes, desired, ..
            } = op
            else {
                panic!("an update");
            };
            assert_eq!(changes.len(), 1);
            assert_eq!(desired.attrs.get("department"), Some(&json!("R&D")));
        }
    }

    #[test]
    fn few_clears_or_a_small_share_go_through() {
        // Nine clears: under the minimum, whatever the share.
        let mut ops: Vec<UserOp> = (0..9).map(|i| update(i, true)).collect();
        assert!(hold_clears(&mut ops, 9, 25.0).0.is_empty());
        // Twelve clears of 100 managed users: 12 %, under 25 %.
        let mut ops: Vec<UserOp> = (0..12).map(|i| update(i, true)).collect();
        assert!(hold_clears(&mut ops, 100, 25.0).0.is_empty());
        assert!(ops
            .iter()
            .all(|op| matches!(op, UserOp::Update { changes, .. } if changes.len() == 2)));
    }
}
