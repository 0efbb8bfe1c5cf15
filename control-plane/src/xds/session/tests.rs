//! Sessions driven with real snapshots, a real fleet registry and their responses decoded as a
//! proxy would: the update shared by sessions holding the previous snapshot, and the sessions
//! that diff for themselves.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;

use super::*;
use crate::snapshot::XdsResource;
use crate::xds::response::GRPC_PREFIX_LEN;

use crate::snapshot::update::test_support::keyed_resource as resource;

fn route(name: &str, version: i64) -> (Kind, XdsResource) {
    resource(Kind::Route, name, version)
}

fn changed(names: &[(Kind, &str)]) -> Option<Vec<(Kind, String)>> {
    Some(names.iter().map(|(k, n)| (*k, (*n).to_owned())).collect())
}

/// Revision 1: cluster `c` and routes `r1`, `r2`.
fn first() -> Arc<Snapshot> {
    let resources = vec![
        resource(Kind::Cluster, "c", 1),
        route("r1", 1),
        route("r2", 1),
    ];
    Arc::new(Snapshot::of(1, 1, None, resources))
}

/// Revision 2 after 1: `c` and `r1` changed, `r2` deleted.
fn second() -> Arc<Snapshot> {
    let resources = vec![resource(Kind::Cluster, "c", 2), route("r1", 2)];
    let changed = changed(&[
        (Kind::Cluster, "c"),
        (Kind::Route, "r1"),
        (Kind::Route, "r2"),
    ]);
    Arc::new(Snapshot::of(2, 1, changed, resources))
}

/// Revision 3 after 2: `r3` added.
fn third() -> Arc<Snapshot> {
    let resources = vec![
        resource(Kind::Cluster, "c", 2),
        route("r1", 2),
        route("r3", 3),
    ];
    Arc::new(Snapshot::of(
        3,
        2,
        changed(&[(Kind::Route, "r3")]),
        resources,
    ))
}

fn subscribe(node: &str, kind: Kind, held: &[(&str, &str)]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: Some(Node {
            id: node.to_owned(),
            ..Default::default()
        }),
        type_url: kind.type_url().to_owned(),
        initial_resource_versions: held
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        ..Default::default()
    }
}

fn answer(response: &Response, error: Option<&str>) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: response.update.kind.type_url().to_owned(),
        response_nonce: response.nonce.clone(),
        error_detail: error.map(|message| RpcStatus {
            message: message.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A session for `node` subscribed to `kinds` at `snapshot`, every response ACKed.
fn synced(fleet: &Arc<Fleet>, node: &str, kinds: &[Kind], snapshot: &Arc<Snapshot>) -> Session {
    let mut session = Session::new(Arc::clone(fleet));
    for kind in kinds {
        let responses = session.on_request(subscribe(node, *kind, &[]), snapshot);
        for response in responses.unwrap() {
            session
                .on_request(answer(&response, None), snapshot)
                .unwrap();
        }
    }
    session
}

/// The response as the proxy decodes it off the wire.
fn decoded(response: &Response) -> DeltaDiscoveryResponse {
    DeltaDiscoveryResponse::decode(&response.to_frame()[GRPC_PREFIX_LEN..]).unwrap()
}

/// `name@version` of every resource, then `-name` of every removal.
fn contents(response: &DeltaDiscoveryResponse) -> Vec<String> {
    let resources = response.resources.iter();
    let resources = resources.map(|r| format!("{}@{}", r.name, r.version));
    let removed = response.removed_resources.iter().map(|n| format!("-{n}"));
    resources.chain(removed).collect()
}

fn revision_of(fleet: &Fleet, node: &str) -> Option<i64> {
    let proxies = fleet.list();
    proxies.iter().find(|p| p.node_id == node)?.config_revision
}

#[test]
fn sessions_holding_the_previous_snapshot_share_one_update_under_their_own_nonces() {
    let fleet = Arc::new(Fleet::default());
    let (first, second) = (first(), second());
    let mut both = synced(&fleet, "both", &[Kind::Cluster, Kind::Route], &first);
    let mut routes = synced(&fleet, "routes", &[Kind::Route], &first);

    let to_both = both.on_snapshot(&second);
    let to_routes = routes.on_snapshot(&second);
    assert_eq!(to_both.len(), 2, "clusters, then routes");
    assert_eq!(to_both[0].update.kind, Kind::Cluster);
    assert_eq!(to_routes.len(), 1, "only the type subscribed to");
    assert!(Arc::ptr_eq(&to_both[1].update, &to_routes[0].update));

    let (a, b) = (decoded(&to_both[1]), decoded(&to_routes[0]));
    assert_eq!((a.nonce.as_str(), b.nonce.as_str()), ("4", "2"));
    assert_eq!(contents(&a), ["r1@2", "-r2"]);
    assert_eq!(contents(&a), contents(&b));
    assert_eq!(
        (a.system_version_info.as_str(), a.type_url.as_str()),
        ("2", Kind::Route.type_url())
    );
    assert_eq!(contents(&decoded(&to_both[0])), ["c@2"]);

    let pending = |node: &str| {
        let proxies = fleet.list();
        let proxy = proxies.iter().find(|p| p.node_id == node).unwrap();
        let pending = proxy.pending.iter();
        pending
            .map(|r| format!("{}/{}@{}", r.kind, r.name, r.version))
            .collect::<Vec<_>>()
    };
    assert_eq!(pending("both"), ["clusters/c@2", "routes/r1@2"]);
    for response in &to_both {
        both.on_request(answer(response, None), &second).unwrap();
    }
    assert!(pending("both").is_empty());
    routes
        .on_request(answer(&to_routes[0], None), &second)
        .unwrap();
    assert_eq!(revision_of(&fleet, "both"), Some(2));
    assert_eq!(revision_of(&fleet, "routes"), Some(2));
    assert!(!both.awaiting_answers() && !routes.awaiting_answers());
}

#[test]
fn a_session_that_missed_a_snapshot_diffs_for_itself() {
    let fleet = Arc::new(Fleet::default());
    let (first, second, third) = (first(), second(), third());
    let mut current = synced(&fleet, "current", &[Kind::Route], &first);
    let mut lagging = synced(&fleet, "lagging", &[Kind::Route], &first);
    current.on_snapshot(&second);

    let to_current = current.on_snapshot(&third);
    let to_lagging = lagging.on_snapshot(&third);
    assert_eq!(contents(&decoded(&to_current[0])), ["r3@3"]);
    assert_eq!(contents(&decoded(&to_lagging[0])), ["r1@2", "r3@3", "-r2"]);
    assert!(!Arc::ptr_eq(&to_current[0].update, &to_lagging[0].update));
    assert_eq!(decoded(&to_lagging[0]).system_version_info, "3");
}

#[test]
fn a_session_that_nacked_shares_the_next_update_without_the_refused_resource() {
    let fleet = Arc::new(Fleet::default());
    let (first, second, third) = (first(), second(), third());
    let mut refusing = synced(&fleet, "refusing", &[Kind::Route], &first);
    let mut other = synced(&fleet, "other", &[Kind::Route], &first);
    let refused = refusing.on_snapshot(&second);
    refusing
        .on_request(answer(&refused[0], Some("r1 is bad")), &second)
        .unwrap();
    other.on_snapshot(&second);
    assert_eq!(fleet.list()[1].nacked[0].error, "r1 is bad");
    assert_eq!(revision_of(&fleet, "refusing"), Some(1));

    let to_refusing = refusing.on_snapshot(&third);
    let to_other = other.on_snapshot(&third);
    assert!(Arc::ptr_eq(&to_refusing[0].update, &to_other[0].update));
    assert_eq!(contents(&decoded(&to_refusing[0])), ["r3@3"]);
}

#[test]
fn a_reconnect_gets_its_own_difference_then_shares_the_next_update() {
    let fleet = Arc::new(Fleet::default());
    let (second, third) = (second(), third());
    let mut other = synced(&fleet, "other", &[Kind::Route], &second);
    let mut back = Session::new(Arc::clone(&fleet));
    let held = [("r1", "1"), ("r2", "1"), ("gone", "0")];
    let sync = back
        .on_request(subscribe("back", Kind::Route, &held), &second)
        .unwrap();
    assert_eq!(sync.len(), 1);
    let mut removed = decoded(&sync[0]);
    removed.removed_resources.sort();
    assert_eq!(contents(&removed), ["r1@2", "-gone", "-r2"]);
    back.on_request(answer(&sync[0], None), &second).unwrap();
    assert_eq!(revision_of(&fleet, "back"), Some(2));

    let to_back = back.on_snapshot(&third);
    let to_other = other.on_snapshot(&third);
    assert!(Arc::ptr_eq(&to_back[0].update, &to_other[0].update));
    assert_eq!(decoded(&to_back[0]).nonce, "2");
}

#[test]
fn an_unchanged_type_gets_no_response_and_the_session_stays_synced() {
    let fleet = Arc::new(Fleet::default());
    let (second, third) = (second(), third());
    let mut clusters = synced(&fleet, "clusters", &[Kind::Cluster], &second);
    assert!(clusters.on_snapshot(&third).is_empty());
    assert_eq!(revision_of(&fleet, "clusters"), Some(3));
}
