//! What a proxy is sent for one resource type: the difference between the versions it holds
//! and a snapshot ([`diff`]), and [`FollowUp`], that difference for the common case computed
//! once per snapshot.
//!
//! Most sessions hold exactly the previous snapshot when a new one is published, so the update
//! of each type from that snapshot to the new one is the same for all of them: the new
//! snapshot computes it (and encodes it, see [`Update::shared`]) when the first session asks,
//! and every session sends that one update under its own nonce. Sessions in any other state
//! (lagging several snapshots, or subscribing with what they hold) diff for themselves, with
//! [`diff`] too (see `xds::session`).

use std::sync::{Arc, OnceLock};

use super::{Snapshot, Update, XdsResource};
use crate::model::Kind;

/// The resources of `kind` in `snapshot` whose version differs from the one held (`held`:
/// name → version), sorted by name, and the held names `snapshot` no longer has; only `names`
/// are looked at.
pub fn diff<'a, 'n>(
    kind: Kind,
    snapshot: &Snapshot,
    held: impl Fn(&str) -> Option<&'a str>,
    names: impl IntoIterator<Item = &'n str>,
) -> (Vec<Arc<XdsResource>>, Vec<String>) {
    let mut resources = Vec::new();
    let mut removed = Vec::new();
    for name in names {
        match snapshot.get(kind, name) {
            Some(resource) if held(name) != Some(resource.version.as_str()) => {
                resources.push(Arc::clone(resource));
            }
            None if held(name).is_some() => removed.push(name.to_owned()),
            _ => {}
        }
    }
    resources.sort_by(|a, b| a.name.cmp(&b.name));
    (resources, removed)
}

/// The updates that bring a proxy holding a snapshot's predecessor to that snapshot: one per
/// type that changed, computed on first use.
#[derive(Debug, Default)]
pub struct FollowUp {
    updates: OnceLock<Vec<Arc<Update>>>,
}

impl FollowUp {
    /// The update of `kind` from `previous` to `snapshot` (the snapshot holding this), `None`
    /// when `kind` did not change. `snapshot` must directly follow `previous`
    /// ([`Snapshot::directly_follows`]).
    pub fn get(
        &self,
        snapshot: &Snapshot,
        previous: &Snapshot,
        kind: Kind,
    ) -> Option<&Arc<Update>> {
        debug_assert!(snapshot.directly_follows(previous));
        let updates = self.updates.get_or_init(|| compute(snapshot, previous));
        updates.iter().find(|u| u.kind == kind)
    }
}

fn compute(snapshot: &Snapshot, previous: &Snapshot) -> Vec<Arc<Update>> {
    let changed = snapshot.changed.as_deref().unwrap_or_default();
    let mut kinds: Vec<Kind> = changed.iter().map(|(kind, _)| *kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    kinds
        .into_iter()
        .filter_map(|kind| {
            let names = changed.iter().filter(|(k, _)| *k == kind);
            let held = |name: &str| previous.get(kind, name).map(|r| r.version.as_str());
            let (resources, removed) = diff(kind, snapshot, held, names.map(|(_, n)| n.as_str()));
            let update = Update::shared(kind, snapshot.revision, resources, removed);
            (!update.is_empty()).then(|| Arc::new(update))
        })
        .collect()
}

#[cfg(test)]
mod tests {

    use super::*;

    use crate::snapshot::update::test_support::keyed_resource as resource;

    fn names(update: &Update) -> Vec<&str> {
        update.resources.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn follow_up_is_computed_once_per_type_that_changed() {
        let previous = Snapshot::of(
            1,
            1,
            None,
            vec![resource(Kind::Route, "a", 1), resource(Kind::Route, "b", 1)],
        );
        let changed = vec![(Kind::Route, "b".to_owned()), (Kind::Route, "a".to_owned())];
        let changed = [changed, vec![(Kind::Route, "c".to_owned())]].concat();
        let next = Snapshot::of(
            2,
            1,
            Some(changed),
            vec![resource(Kind::Route, "b", 2), resource(Kind::Route, "c", 2)],
        );
        let routes = next.follow_up(&previous, Kind::Route).unwrap();
        assert_eq!(names(routes), ["b", "c"]);
        assert_eq!(routes.removed, ["a"]);
        assert_eq!(routes.revision, 2);
        let again = next.follow_up(&previous, Kind::Route).unwrap();
        assert!(Arc::ptr_eq(routes, again));
        assert!(next.follow_up(&previous, Kind::Cluster).is_none());
    }

    #[test]
    fn a_change_back_to_the_held_version_is_no_update() {
        let previous = Snapshot::of(1, 1, None, vec![resource(Kind::Cluster, "a", 1)]);
        let changed = Some(vec![(Kind::Cluster, "a".to_owned())]);
        let next = Snapshot::of(2, 1, changed, vec![resource(Kind::Cluster, "a", 1)]);
        assert!(next.follow_up(&previous, Kind::Cluster).is_none());
    }
}
