//! WHIP, WHEP and the join endpoint against a real node process on loopback, with str0m clients
//! sending and receiving real media over UDP.

use std::time::{Duration, Instant};

use multistream_node::token::{Issuer, unix_now_secs};
use multistream_proto::{Claims, Grants, Role as ProtoRole, TokenKind};
use multistream_tests::client::{Client, Role};
use multistream_tests::http::{Response, metric, request};
use multistream_tests::node_process::{NodeProcess, link_token};
use multistream_tests::udp;

const SUBSCRIBERS: &str = "multistream_peers{kind=\"subscriber\"}";
const PUBLISHERS: &str = "multistream_peers{kind=\"publisher\"}";

async fn offer(node: &NodeProcess, endpoint: &str, token: &str, sdp: &str) -> Response {
    request(
        node.http,
        "POST",
        endpoint,
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/sdp"),
        ],
        sdp.as_bytes(),
    )
    .await
    .expect("the node answers")
}

/// Publishes or watches through WHIP/WHEP; returns the running client and its resource URL.
async fn connect(
    node: &NodeProcess,
    endpoint: &str,
    token: &str,
    role: Role,
) -> (udp::Running, String) {
    let (socket, addr) = udp::bind().await.expect("binds on loopback");
    let now = Instant::now();
    let (mut client, sdp) = Client::new(now, now, addr, role);
    let response = offer(node, endpoint, token, &sdp).await;
    assert_eq!(response.status, 201, "{endpoint}: {}", response.body);
    assert_eq!(response.header("content-type"), Some("application/sdp"));
    let location = response
        .header("location")
        .expect("a Location header")
        .to_owned();
    assert!(
        location.starts_with(endpoint.split('?').next().expect("path")),
        "{location}"
    );
    client
        .accept_answer(&response.body)
        .expect("the answer is valid SDP");
    (udp::spawn(client, socket), location)
}

async fn join_as_student(node: &NodeProcess, name: &str) -> String {
    let invite = link_token(&node.student_link);
    let body = format!("{{\"name\":\"{name}\"}}");
    let response = request(
        node.http,
        "POST",
        "/api/sessions/demo/join",
        &[
            ("Authorization", &format!("Bearer {invite}")),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
    .await
    .expect("the node answers");
    assert_eq!(response.status, 200, "{}", response.body);
    let json: serde_json::Value = serde_json::from_str(&response.body).expect("JSON");
    json["token"].as_str().expect("a token").to_owned()
}

/// One request with a bearer header (`bearer` is the whole header value).
async fn call(node: &NodeProcess, method: &str, path: &str, bearer: &str, body: &[u8]) -> Response {
    request(node.http, method, path, &[("Authorization", bearer)], body)
        .await
        .expect("the node answers")
}

fn watching(summary: &udp::Summary) -> bool {
    summary.video_frames > 15 && summary.audio_packets > 15
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_publish_reaches_whep_watchers_and_leaving_frees_the_peer() {
    let node = NodeProcess::start("whip-whep").expect("the node starts");
    let teacher = link_token(&node.teacher_link).to_owned();
    let (mut publisher, publisher_location) = connect(
        &node,
        "/whip/demo",
        &teacher,
        Role::Publisher { simulcast: true },
    )
    .await;
    assert!(
        publisher
            .wait_for(Duration::from_secs(10), |s| s.connected)
            .await,
        "publisher connects"
    );

    let student = join_as_student(&node, "Ana").await;
    let guest = node
        .token(&[
            "--session",
            "demo",
            "--identity",
            "visitor-1",
            "--name",
            "Visitor",
            "--role",
            "guest",
        ])
        .expect("the CLI mints a guest token");
    let (mut one, one_location) = connect(&node, "/whep/demo", &student, Role::Subscriber).await;
    let (mut two, _) = connect(&node, "/whep/demo?source=camera", &guest, Role::Subscriber).await;
    for watcher in [&mut one, &mut two] {
        assert!(
            watcher.wait_for(Duration::from_secs(10), watching).await,
            "a watcher receives audio and video: {:?}",
            watcher.now()
        );
        assert_eq!(
            watcher.now().first_frame_keyframe,
            Some(true),
            "decoding starts on a keyframe"
        );
    }
    let page = node.metrics().await.expect("metrics");
    assert_eq!(metric(&page, SUBSCRIBERS), Some(2.0), "{page}");
    assert_eq!(metric(&page, PUBLISHERS), Some(1.0));
    assert!(
        metric(
            &page,
            "multistream_rtp_packets_total{direction=\"forwarded\"}"
        )
        .is_some_and(|n| n > 0.0)
    );
    assert!(
        metric(
            &page,
            "multistream_keyframe_requests_total{outcome=\"sent\"}"
        )
        .is_some_and(|n| n >= 1.0)
    );

    // Someone else cannot end Ana's connection; Ana can.
    let bearer_guest = format!("Bearer {guest}");
    let response = call(&node, "DELETE", &one_location, &bearer_guest, b"").await;
    assert_eq!(response.status, 403);
    let bearer_student = format!("Bearer {student}");
    let response = call(&node, "DELETE", &one_location, &bearer_student, b"").await;
    assert_eq!(response.status, 200);
    node.wait_for_metric(SUBSCRIBERS, Duration::from_secs(5), |n| n == 1.0)
        .await
        .expect("the peer is freed");
    let response = call(&node, "DELETE", &one_location, &bearer_student, b"").await;
    assert_eq!(response.status, 404, "a second DELETE finds nothing");
    one.stop().await;

    // A watcher that closes its connection (DTLS close_notify) is freed too.
    two.stop().await;
    node.wait_for_metric(SUBSCRIBERS, Duration::from_secs(5), |n| n == 0.0)
        .await
        .expect("closed peer is freed");

    let bearer_teacher = format!("Bearer {teacher}");
    let response = call(&node, "DELETE", &publisher_location, &bearer_teacher, b"").await;
    assert_eq!(response.status, 200);
    publisher.stop().await;
    node.wait_for_metric(PUBLISHERS, Duration::from_secs(5), |n| n == 0.0)
        .await
        .expect("publisher freed");
    assert!(node.stop(), "the node exits cleanly on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_status_codes_the_standards_name() {
    let node = NodeProcess::start("bad-input").expect("the node starts");
    let teacher = link_token(&node.teacher_link).to_owned();
    let student = join_as_student(&node, "Ben").await;
    let now = Instant::now();
    let (_, send_offer) = Client::new(
        now,
        now,
        "127.0.0.1:9".parse().expect("addr"),
        Role::Publisher { simulcast: false },
    );

    // No token, a garbage token, an expired one, one for another session.
    let response = request(
        node.http,
        "POST",
        "/whip/demo",
        &[("Content-Type", "application/sdp")],
        send_offer.as_bytes(),
    )
    .await
    .expect("answers");
    assert_eq!(response.status, 401);
    assert!(
        response
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer"))
    );
    assert_eq!(
        offer(&node, "/whip/demo", "not.a.token", &send_offer)
            .await
            .status,
        401
    );
    let issuer = Issuer::load_or_create(&node.data_dir).expect("the node's identity");
    let claims = |sid: &str, exp: u64| Claims {
        iss: issuer.name().to_owned(),
        sub: "t".parse().expect("id"),
        sid: sid.parse().expect("id"),
        name: "T".into(),
        role: ProtoRole::Teacher,
        grants: Grants {
            publish: true,
            subscribe: true,
        },
        kind: TokenKind::Access,
        iat: unix_now_secs() - 100,
        exp,
    };
    let expired = issuer.sign(&claims("demo", unix_now_secs() - 10));
    let response = offer(&node, "/whip/demo", &expired, &send_offer).await;
    assert_eq!(response.status, 401);
    assert!(response.body.contains("expired"), "{}", response.body);
    let elsewhere = issuer.sign(&claims("other", unix_now_secs() + 600));
    assert_eq!(
        offer(&node, "/whip/demo", &elsewhere, &send_offer)
            .await
            .status,
        403
    );
    // The invitation is not a personal pass.
    assert_eq!(
        offer(
            &node,
            "/whep/demo",
            link_token(&node.student_link),
            &send_offer
        )
        .await
        .status,
        401
    );

    // A student may watch but not publish.
    let response = offer(&node, "/whip/demo", &student, &send_offer).await;
    assert_eq!(response.status, 403);
    assert!(
        response.body.contains("may not publish"),
        "{}",
        response.body
    );

    // Content type, size, SDP, source and method.
    let bearer = format!("Bearer {teacher}");
    let response = request(
        node.http,
        "POST",
        "/whip/demo",
        &[("Authorization", &bearer), ("Content-Type", "text/plain")],
        send_offer.as_bytes(),
    )
    .await
    .expect("answers");
    assert_eq!(response.status, 415);
    assert_eq!(
        offer(&node, "/whip/demo", &teacher, &"a".repeat(70_000))
            .await
            .status,
        413
    );
    let response = offer(&node, "/whip/demo", &teacher, "v=0\r\nthis is not sdp\r\n").await;
    assert_eq!(response.status, 400, "{}", response.body);
    assert_eq!(
        offer(&node, "/whip/demo?source=projector", &teacher, &send_offer)
            .await
            .status,
        400
    );
    assert_eq!(
        offer(&node, "/whip/bad%20session", &teacher, &send_offer)
            .await
            .status,
        404
    );
    let response = call(&node, "PATCH", "/whip/demo/abc", &bearer, b"").await;
    assert_eq!(response.status, 405);
    let response = call(&node, "DELETE", "/whip/demo/does-not-exist", &bearer, b"").await;
    assert_eq!(response.status, 404);
    let response = request(node.http, "OPTIONS", "/whip/demo", &[], b"")
        .await
        .expect("answers");
    assert_eq!(response.header("accept-post"), Some("application/sdp"));

    // Join: a bad name and a personal token in place of an invitation.
    let invite = format!("Bearer {}", link_token(&node.student_link));
    let response = call(
        &node,
        "POST",
        "/api/sessions/demo/join",
        &invite,
        b"{\"name\":\"   \"}",
    )
    .await;
    assert_eq!(response.status, 400);
    assert!(
        response.body.contains("\"error\":\"bad_name\""),
        "{}",
        response.body
    );
    let response = call(&node, "POST", "/api/sessions/demo/join", &invite, b"{nope").await;
    assert_eq!(response.status, 400);
    let response = call(
        &node,
        "POST",
        "/api/sessions/demo/join",
        &bearer,
        b"{\"name\":\"X\"}",
    )
    .await;
    assert_eq!(response.status, 401);

    // Garbage on the media port is dropped and counted; the node keeps serving media.
    let (publisher, _) = connect(
        &node,
        "/whip/demo",
        &teacher,
        Role::Publisher { simulcast: false },
    )
    .await;
    let (mut watcher, _) = connect(&node, "/whep/demo", &student, Role::Subscriber).await;
    assert!(
        watcher.wait_for(Duration::from_secs(10), watching).await,
        "media flows"
    );
    let noise = std::net::UdpSocket::bind("127.0.0.1:0").expect("binds");
    for size in [0usize, 1, 12, 100, 1200, 1500] {
        for first in [0u8, 1, 22, 128, 200, 255] {
            let mut datagram = vec![0x5a; size];
            if let Some(byte) = datagram.first_mut() {
                *byte = first;
            }
            noise.send_to(&datagram, node.media).expect("sends");
        }
    }
    node.wait_for_metric(
        "multistream_dropped_packets_total{reason=\"unrouted\"}",
        Duration::from_secs(5),
        |n| n > 0.0,
    )
    .await
    .expect("garbage is counted");
    let frames = watcher.now().video_frames;
    assert!(
        watcher
            .wait_for(Duration::from_secs(5), |s| s.video_frames > frames + 15)
            .await,
        "media keeps flowing"
    );
    let page = node.metrics().await.expect("metrics");
    assert!(
        metric(
            &page,
            "multistream_http_refusals_total{endpoint=\"whip\",reason=\"unauthorized\"}"
        )
        .is_some_and(|n| n >= 2.0),
        "{page}"
    );
    watcher.stop().await;
    publisher.stop().await;
    assert!(node.stop(), "the node exits cleanly");
}

#[test]
fn the_cli_says_clearly_what_is_wrong() {
    let binary = multistream_tests::node_process::node_binary();
    let run = |args: &[&str]| {
        let output = std::process::Command::new(&binary)
            .args(args)
            .output()
            .expect("runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let port = taken.local_addr().expect("addr").to_string();
    let dir = std::env::temp_dir().join(format!("multistream-cli-{}", std::process::id()));
    let dir_text = dir.to_string_lossy().into_owned();
    let (ok, stderr) = run(&[
        "run",
        "--http",
        &port,
        "--media",
        "127.0.0.1:0",
        "--data-dir",
        &dir_text,
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("already in use") && stderr.contains("--http"),
        "{stderr}"
    );

    let config = dir.join("bad.toml");
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(&config, "http_adress = \"127.0.0.1:1\"\n").expect("writes");
    let (ok, stderr) = run(&["run", "--config", &config.to_string_lossy()]);
    assert!(!ok);
    assert!(stderr.contains("unknown field `http_adress`"), "{stderr}");

    // A data directory that cannot exist (a path through a regular file).
    let blocked = format!("{}/sub", config.to_string_lossy());
    let (ok, stderr) = run(&[
        "run",
        "--http",
        "127.0.0.1:0",
        "--media",
        "127.0.0.1:0",
        "--data-dir",
        &blocked,
    ]);
    assert!(!ok);
    assert!(stderr.contains("data directory"), "{stderr}");

    let (ok, stderr) = run(&[
        "token",
        "--session",
        "demo",
        "--identity",
        "a b",
        "--name",
        "X",
        "--data-dir",
        &dir_text,
    ]);
    assert!(!ok);
    assert!(stderr.contains("only ASCII letters"), "{stderr}");
    let (ok, stderr) = run(&[
        "token",
        "--session",
        "demo",
        "--identity",
        "ab",
        "--name",
        "X",
        "--lifetime",
        "9y",
        "--data-dir",
        &dir_text,
    ]);
    assert!(!ok);
    assert!(stderr.contains("unknown unit"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_https_with_the_configured_certificate() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (node, cert) = NodeProcess::start_tls("https").expect("the node starts with TLS");
    let made = std::fs::read(&cert).expect("the certificate file");
    let again =
        multistream_node::tls::self_signed(node.data_dir.as_path(), &[]).expect("loads it again");
    assert_eq!(made, again.cert_pem, "the certificate is kept, not remade");
    assert!(node.base_url.starts_with("https://"), "{}", node.base_url);
    assert!(node.teacher_link.starts_with("https://"));

    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&made).expect("PEM"))
        .expect("a root");
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(node.http)
        .await
        .expect("connects");
    let mut tls = connector
        .connect(ServerName::try_from("localhost").expect("a name"), tcp)
        .await
        .expect("the TLS handshake verifies against the node's certificate");
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("writes");
    let mut response = String::new();
    tls.read_to_string(&mut response).await.expect("reads");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"status\":\"ok\""), "{response}");
    assert!(node.stop());
}

/// The load generator itself works end to end (a tiny run; the real figures come from
/// `loadgen` in release mode).
#[tokio::test(flavor = "current_thread")]
async fn the_load_generator_measures_a_small_class() {
    let row = multistream_tests::load::measure(3, Duration::from_secs(2))
        .await
        .expect("a measured run");
    assert_eq!(row.subscribers, 3);
    assert!(row.forwarded_per_second > 100.0, "{row:?}");
    assert!(row.delivered_ratio > 0.9, "{row:?}");
    assert!(
        row.delay_p99_us >= row.delay_p50_us && row.delay_p50_us > 0,
        "{row:?}"
    );
    assert!(row.node_rss_bytes > 0);
}
