//! Placement at the join endpoint, against three real edge processes on loopback that share a
//! cluster issuer: "Central" (no campus), "North campus" (127.0.0.2/32) and "South campus"
//! (127.0.0.3/32). A join from another loopback source address plays a browser on a campus
//! network (the test's HTTP client binds it); a join from 127.0.0.1 is off campus.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use multistream_proto::session::EventBody;
use multistream_tests::classroom::ClassClient;
use multistream_tests::cluster::Cluster;
use multistream_tests::http::{Response, metric, request, request_from};
use multistream_tests::node_process::{NodeProcess, token_in};

const SESSION: &str = "geography";

/// How long the edges may take to hear from each other (a report every 2 s) or to notice one
/// is gone (three reports missed).
const EDGES_DEADLINE: Duration = Duration::from_secs(30);

const OFF_CAMPUS: &str = "127.0.0.1";
const NORTH_CAMPUS: &str = "127.0.0.2";
const SOUTH_CAMPUS: &str = "127.0.0.3";

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an IP address")
}

/// An invitation to `SESSION`, signed by the node in `dir` (with `extra` flags for `token`).
fn invitation(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "--session",
        SESSION,
        "--identity",
        "teacher",
        "--name",
        "Class invitation",
        "--role",
        "student",
        "--invite",
    ];
    args.extend_from_slice(extra);
    token_in(dir, &args).expect("an invitation")
}

/// `POST /api/sessions/{SESSION}/join` on `edge` from the local address `from`.
async fn join(edge: SocketAddr, from: &str, invite: &str, body: serde_json::Value) -> Response {
    let bearer = format!("Bearer {invite}");
    request_from(
        ip(from),
        edge,
        "POST",
        &format!("/api/sessions/{SESSION}/join"),
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
    .await
    .expect("the join answers")
}

fn json(response: &Response) -> serde_json::Value {
    serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", response.body))
}

/// The ids `GET /api/edges` on `edge` lists.
async fn listed(edge: SocketAddr) -> Vec<String> {
    let response = request(edge, "GET", "/api/edges", &[], b"")
        .await
        .expect("/api/edges answers");
    assert_eq!(response.status, 200, "{}", response.body);
    json(&response)["edges"]
        .as_array()
        .expect("a list of edges")
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect()
}

/// Polls `/api/edges` on `edge` until the ids listed satisfy `condition`.
async fn wait_for_edges(edge: SocketAddr, what: &str, condition: impl Fn(&[String]) -> bool) {
    let deadline = tokio::time::Instant::now() + EDGES_DEADLINE;
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    loop {
        interval.tick().await;
        let ids = listed(edge).await;
        if condition(&ids) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: /api/edges still lists {ids:?} after {EDGES_DEADLINE:?}"
        );
    }
}

/// What the test expects the edge's placement counters to read.
#[derive(Default)]
struct Tally {
    decisions: std::collections::BTreeMap<String, u64>,
    redirects: u64,
}

impl Tally {
    fn note(&mut self, answer: &serde_json::Value) {
        let reason = answer["placement"]["reason"]
            .as_str()
            .expect("a placement reason");
        *self.decisions.entry(reason.to_owned()).or_default() += 1;
        if answer.get("redirect").is_some() {
            self.redirects += 1;
        }
    }
}

#[tokio::test]
async fn joins_go_to_the_campus_edge_then_the_nearest_then_the_emptiest() {
    let cluster = Cluster::new("placement", 3).expect("data directories");
    let (key, _) = cluster.issuer_key().expect("a cluster issuer key");
    let start = |i: usize, name: &str, campus: Option<&str>| {
        let mut args = vec!["--issuer-key", key.as_str(), "--edge-name", name];
        if let Some(network) = campus {
            args.extend(["--campus-network", network]);
        }
        cluster.start_with(i, &args).expect("the edge starts")
    };
    let central = start(0, "Central", None);
    let north = start(1, "North campus", Some("127.0.0.2/32"));
    let south = start(2, "South campus", Some("127.0.0.3/32"));
    let (central_id, north_id, south_id) = (&cluster.ids[0], &cluster.ids[1], &cluster.ids[2]);
    wait_for_edges(central.http, "all three edges", |ids| ids.len() == 3).await;

    // The list: this edge first, then its peers, each with the URL browsers reach it at.
    let response = request(central.http, "GET", "/api/edges", &[], b"")
        .await
        .expect("answers");
    let edges = json(&response);
    let first = &edges["edges"][0];
    assert_eq!(first["id"], central_id.as_str());
    assert_eq!(first["this"], true);
    assert_eq!(first["url"], central.base_url.as_str());
    let north_entry = edges["edges"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|e| e["id"] == north_id.as_str())
        .expect("North is listed");
    assert_eq!(north_entry["name"], "North campus");
    assert_eq!(north_entry["url"], north.base_url.as_str());
    assert_eq!(north_entry["this"], false);
    // Browsers time /healthz on each edge from another origin: readable cross-origin, uncached.
    let health = request(
        north.http,
        "GET",
        "/healthz",
        &[("Origin", "http://elsewhere")],
        b"",
    )
    .await
    .expect("answers");
    assert_eq!(health.status, 200);
    assert_eq!(health.header("access-control-allow-origin"), Some("*"));
    assert_eq!(health.header("cache-control"), Some("no-store"));
    // The class page may connect to the other edges, and to nothing else.
    let page = request(central.http, "GET", &format!("/s/{SESSION}"), &[], b"")
        .await
        .expect("answers");
    let policy = page.header("content-security-policy").expect("a CSP");
    let north_socket = north.base_url.replacen("http://", "ws://", 1);
    assert!(
        policy.contains("connect-src 'self' ") && policy.contains(&north_socket),
        "{policy}"
    );
    assert!(policy.contains("script-src 'self';"), "{policy}");

    let invite = invitation(&cluster.dirs[0], &["--issuer-key", &key]);
    let mut tally = Tally::default();

    // A browser on North's campus network joining through Central is sent to North, and the
    // token Central signed is accepted there.
    let response = join(
        central.http,
        NORTH_CAMPUS,
        &invite,
        serde_json::json!({"name": "Ada"}),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let answer = json(&response);
    tally.note(&answer);
    assert_eq!(answer["edge"]["id"], north_id.as_str(), "{answer}");
    assert_eq!(answer["edge"]["name"], "North campus");
    assert_eq!(answer["placement"]["reason"], "campus");
    assert_eq!(answer["placement"]["network"], "127.0.0.2/32");
    assert_eq!(
        answer["redirect"],
        format!("{}/s/{SESSION}", north.base_url).as_str()
    );
    let token = answer["token"].as_str().expect("a token");
    let mut ada = ClassClient::connect(north.http, SESSION, token, None)
        .await
        .unwrap_or_else(|e| panic!("North refuses the token Central signed: {e}"));
    ada.wait_for_event(
        |e| matches!(&e.body, EventBody::Joined { edge_name: Some(n), .. } if n == "North campus"),
    )
    .await
    .expect("Ada's join through North is in the class");
    ada.close().await;
    // South's campus likewise; the campus beats a nearer measurement.
    let rtts = serde_json::json!({ central_id.as_str(): 1, north_id.as_str(): 2 });
    let answer = json(
        &join(
            central.http,
            SOUTH_CAMPUS,
            &invite,
            serde_json::json!({"name": "Bo", "rtts": rtts}),
        )
        .await,
    );
    tally.note(&answer);
    assert_eq!(answer["edge"]["id"], south_id.as_str(), "{answer}");
    assert_eq!(answer["placement"]["reason"], "campus");

    // Off campus, the edge the browser measured nearest.
    let rtts = serde_json::json!({ central_id.as_str(): 40, north_id.as_str(): 55.5, south_id.as_str(): 3.2 });
    let answer = json(
        &join(
            central.http,
            OFF_CAMPUS,
            &invite,
            serde_json::json!({"name": "Cy", "rtts": rtts}),
        )
        .await,
    );
    tally.note(&answer);
    assert_eq!(answer["edge"]["id"], south_id.as_str(), "{answer}");
    assert_eq!(answer["placement"]["reason"], "nearest");
    assert_eq!(answer["placement"]["rtt_ms"], 3);
    assert_eq!(
        answer["redirect"],
        format!("{}/s/{SESSION}", south.base_url).as_str()
    );
    // Nearest and this edge: no redirect.
    let rtts = serde_json::json!({ central_id.as_str(): 2, south_id.as_str(): 30 });
    let answer = json(
        &join(
            central.http,
            OFF_CAMPUS,
            &invite,
            serde_json::json!({"name": "Di", "rtts": rtts}),
        )
        .await,
    );
    tally.note(&answer);
    assert_eq!(answer["edge"]["id"], central_id.as_str(), "{answer}");
    assert_eq!(answer["placement"]["reason"], "nearest");
    assert!(answer.get("redirect").is_none(), "{answer}");

    // Nothing measured, all equally empty: this edge.
    let answer = json(
        &join(
            central.http,
            OFF_CAMPUS,
            &invite,
            serde_json::json!({"name": "Ed"}),
        )
        .await,
    );
    tally.note(&answer);
    assert_eq!(answer["edge"]["id"], central_id.as_str(), "{answer}");
    assert_eq!(answer["placement"]["reason"], "least_loaded");
    assert!(answer.get("redirect").is_none(), "{answer}");
    // With people connected to Central, a join with nothing measured goes to an emptier edge
    // (as soon as Central's own load reads them: it is counted every second).
    let own = multistream_tests::node_process::participant_token(
        &cluster.dirs[0],
        SESSION,
        "fay",
        multistream_proto::Role::Student,
    )
    .expect("a token");
    let _fay = ClassClient::connect(central.http, SESSION, &own, None)
        .await
        .expect("connects");
    let deadline = tokio::time::Instant::now() + EDGES_DEADLINE;
    let answer = loop {
        let answer = json(
            &join(
                central.http,
                OFF_CAMPUS,
                &invite,
                serde_json::json!({"name": "Gus"}),
            )
            .await,
        );
        tally.note(&answer);
        if answer["edge"]["id"] != central_id.as_str() {
            break answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a loaded edge keeps being chosen: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(answer["placement"]["reason"], "least_loaded", "{answer}");
    assert!(answer.get("redirect").is_some(), "{answer}");

    // Bad round-trip times are refused, each with its reason.
    for (rtts, error, says) in [
        (
            serde_json::json!({ north_id.as_str(): "fast" }),
            "bad_json",
            "rtts",
        ),
        (
            serde_json::json!({ north_id.as_str(): -1 }),
            "bad_rtts",
            "0 to 60000",
        ),
        (
            serde_json::json!({ north_id.as_str(): 60001 }),
            "bad_rtts",
            "0 to 60000",
        ),
        (serde_json::json!([1, 2]), "bad_json", "rtts"),
        (
            serde_json::Value::Object(
                (0..17)
                    .map(|i| (format!("edge-{i}"), serde_json::json!(5)))
                    .collect(),
            ),
            "bad_rtts",
            "at most 16",
        ),
    ] {
        let response = join(
            central.http,
            OFF_CAMPUS,
            &invite,
            serde_json::json!({"name": "Hal", "rtts": rtts}),
        )
        .await;
        assert_eq!(response.status, 400, "{rtts}: {}", response.body);
        let refusal = json(&response);
        assert_eq!(refusal["error"], error, "{rtts}: {refusal}");
        let message = refusal["message"].as_str().expect("a message");
        assert!(message.contains(says), "{rtts}: {message}");
    }

    // The counters say what the answers said.
    let page = central.metrics().await.expect("metrics");
    for reason in [
        "campus",
        "nearest",
        "least_loaded",
        "only_choice",
        "no_cluster_issuer",
    ] {
        let series = format!("multistream_placement_decisions_total{{reason=\"{reason}\"}}");
        let expected = tally.decisions.get(reason).copied().unwrap_or(0) as f64;
        assert_eq!(metric(&page, &series), Some(expected), "{series}");
    }
    assert_eq!(
        metric(&page, "multistream_placement_redirects_total"),
        Some(tally.redirects as f64)
    );

    // North goes down: once Central stops hearing from it, it is never chosen, not for its own
    // campus nor when measured nearest.
    drop(north);
    wait_for_edges(central.http, "North gone", |ids| {
        !ids.contains(north_id) && ids.len() == 2
    })
    .await;
    let rtts =
        serde_json::json!({ north_id.as_str(): 1, central_id.as_str(): 20, south_id.as_str(): 20 });
    for from in [NORTH_CAMPUS, OFF_CAMPUS] {
        let answer = json(
            &join(
                central.http,
                from,
                &invite,
                serde_json::json!({"name": "Ivy", "rtts": rtts}),
            )
            .await,
        );
        assert_ne!(answer["edge"]["id"], north_id.as_str(), "{answer}");
        assert_ne!(answer["placement"]["reason"], "campus", "{answer}");
    }
    assert!(south.stop());
    assert!(central.stop());
}

/// Edges without a shared cluster issuer would refuse each other's tokens: a join stays where it
/// is and says why.
#[tokio::test]
async fn without_a_cluster_issuer_a_join_stays_and_says_why() {
    let cluster = Cluster::new("placement-own-keys", 2).expect("data directories");
    let central = cluster
        .start_with(0, &["--edge-name", "Central"])
        .expect("starts");
    let north = cluster
        .start_with(
            1,
            &[
                "--edge-name",
                "North campus",
                "--campus-network",
                "127.0.0.2/32",
            ],
        )
        .expect("starts");
    wait_for_edges(central.http, "both edges", |ids| ids.len() == 2).await;
    let invite = invitation(&cluster.dirs[0], &[]);
    let answer = json(
        &join(
            central.http,
            NORTH_CAMPUS,
            &invite,
            serde_json::json!({"name": "Ada"}),
        )
        .await,
    );
    assert_eq!(answer["edge"]["id"], cluster.ids[0].as_str(), "{answer}");
    assert_eq!(answer["placement"]["reason"], "no_cluster_issuer");
    assert_eq!(
        answer["placement"]["preferred"]["id"],
        cluster.ids[1].as_str()
    );
    assert_eq!(answer["placement"]["rule"]["reason"], "campus");
    assert!(answer.get("redirect").is_none(), "{answer}");
    let page = central.metrics().await.expect("metrics");
    assert_eq!(
        metric(
            &page,
            "multistream_placement_decisions_total{reason=\"no_cluster_issuer\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&page, "multistream_placement_redirects_total"),
        Some(0.0)
    );
    // A standalone node: the only choice.
    let alone = NodeProcess::start("placement-alone").expect("starts");
    let invite = invitation(&alone.data_dir, &[]);
    let answer = json(
        &join(
            alone.http,
            OFF_CAMPUS,
            &invite,
            serde_json::json!({"name": "Bo"}),
        )
        .await,
    );
    assert_eq!(answer["placement"]["reason"], "only_choice", "{answer}");
    assert_eq!(answer["edge"]["url"], alone.base_url.as_str());
    assert!(alone.stop());
    assert!(north.stop());
    assert!(central.stop());
}
