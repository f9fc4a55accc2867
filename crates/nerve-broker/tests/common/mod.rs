//! The raw-protocol test harness: a broker in the test's own runtime over a temp dir, and a client that
//! speaks kafka-protocol's codecs over a real socket.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use nerve_broker::{Broker, BrokerConfig, Server};
use nerve_storage::{LocalConfig, LocalLogStore, LocalMetaStore, MetaStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// How long a test waits for an answer before it fails rather than hangs.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The client id every test request carries.
pub const CLIENT_ID: &str = "protocol-test";

pub struct TestBroker {
    pub addr: std::net::SocketAddr,
    /// Every listener's name and bound address (`addr` is the first's).
    pub addrs: Vec<(String, std::net::SocketAddr)>,
    pub broker: Arc<Broker>,
    pub stop: watch::Sender<bool>,
    pub server: tokio::task::JoinHandle<Result<(), nerve_broker::ServerError>>,
    pub dir: tempfile::TempDir,
}

pub async fn start() -> TestBroker {
    start_in(tempfile::tempdir().unwrap(), |_, _| {}).await
}

/// A broker over `dir` (possibly holding an earlier broker's data) with settings adjusted by `configure`.
pub async fn start_in(
    dir: tempfile::TempDir,
    configure: impl FnOnce(&mut BrokerConfig, &mut LocalConfig),
) -> TestBroker {
    match try_start_in(dir, configure).await {
        Ok(broker) => broker,
        Err((e, _)) => panic!("broker did not start: {e}"),
    }
}

pub async fn try_start_in(
    dir: tempfile::TempDir,
    configure: impl FnOnce(&mut BrokerConfig, &mut LocalConfig),
) -> Result<TestBroker, (nerve_broker::ConfigError, tempfile::TempDir)> {
    let mut config = BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        advertised_listener: "nerve.test:19092".into(),
        topic_defaults: BTreeMap::from([("fsync".into(), "never".into())]),
        ..BrokerConfig::default()
    };
    let mut local = LocalConfig::default();
    configure(&mut config, &mut local);
    let meta = LocalMetaStore::open(dir.path()).unwrap();
    let mut topics = std::collections::HashMap::new();
    for topic in meta.topics() {
        topics.insert(
            topic.name.clone(),
            Arc::new(config.topic_config(&topic.configs).unwrap()),
        );
    }
    let log = LocalLogStore::open(dir.path(), local, &topics).unwrap();
    let (stop, stopped) = watch::channel(false);
    let broker = match Broker::new(config, Arc::new(log), Arc::new(meta), stopped).await {
        Ok(broker) => broker,
        Err(e) => return Err((e, dir)),
    };
    let server = Server::bind(broker.clone()).await.unwrap();
    let addr = server.local_addr().unwrap();
    let addrs = server.local_addrs().unwrap();
    Ok(TestBroker {
        addr,
        addrs,
        broker,
        stop,
        server: tokio::spawn(server.run()),
        dir,
    })
}

impl TestBroker {
    /// Shuts the broker down cleanly and hands back its data directory for the next one.
    pub async fn shut_down(self) -> tempfile::TempDir {
        self.stop.send(true).unwrap();
        self.server.await.unwrap().unwrap();
        self.dir
    }
}

pub struct Client {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl Client {
    pub async fn connect(broker: &TestBroker) -> Client {
        Client::connect_to(broker.addr).await
    }

    pub async fn connect_to(addr: std::net::SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            next_correlation_id: 1,
        }
    }

    /// Waits for the broker to close the connection; panics if a frame comes instead.
    pub async fn expect_closed(&mut self) {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(PATIENCE, self.stream.read(&mut byte))
            .await
            .expect("the connection closes in time");
        match read {
            Ok(0) | Err(_) => {}
            Ok(_) => panic!("expected the connection to close, got data"),
        }
    }

    /// Sends a request and returns its correlation id.
    pub async fn send<R: Request>(&mut self, version: i16, request: &R) -> i32 {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .unwrap();
        request.encode(&mut body, version).unwrap();
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.put_slice(&body);
        self.stream.write_all(&frame).await.unwrap();
        correlation_id
    }

    /// Writes `payload` as one length-prefixed frame, with no request header (a raw SASL token).
    pub async fn send_frame(&mut self, payload: &[u8]) {
        let mut frame = BytesMut::new();
        frame.put_i32(payload.len() as i32);
        frame.put_slice(payload);
        self.stream.write_all(&frame).await.unwrap();
    }

    /// Reads one length-prefixed frame whole.
    pub async fn recv_frame(&mut self) -> Bytes {
        let read = async {
            let size = self.stream.read_i32().await.unwrap();
            let mut frame = vec![0u8; size as usize];
            self.stream.read_exact(&mut frame).await.unwrap();
            Bytes::from(frame)
        };
        tokio::time::timeout(PATIENCE, read)
            .await
            .expect("an answer in time")
    }

    /// Reads one response frame: (correlation id, bytes after the header's correlation id).
    pub async fn recv_raw(&mut self) -> (i32, Bytes) {
        let read = async {
            let size = self.stream.read_i32().await.unwrap();
            let mut frame = vec![0u8; size as usize];
            self.stream.read_exact(&mut frame).await.unwrap();
            Bytes::from(frame)
        };
        let mut frame = tokio::time::timeout(PATIENCE, read)
            .await
            .expect("an answer in time");
        let correlation_id = frame.get_i32();
        (correlation_id, frame)
    }

    pub async fn recv<R: Request>(&mut self, version: i16, expected_id: i32) -> R::Response {
        let (correlation_id, mut rest) = self.recv_raw().await;
        assert_eq!(correlation_id, expected_id);
        if R::Response::header_version(version) >= 1 && R::KEY != ApiKey::ApiVersions as i16 {
            // Flexible response header: tagged fields (none expected).
            assert_eq!(rest.get_u8(), 0);
        }
        let response = R::Response::decode(&mut rest, version).unwrap();
        assert!(rest.is_empty(), "trailing bytes after the response");
        response
    }

    pub async fn call<R: Request>(&mut self, version: i16, request: &R) -> R::Response {
        let id = self.send(version, request).await;
        self.recv::<R>(version, id).await
    }
}

/// Now, in Kafka's milliseconds. Test records carry recent timestamps: older ones would be removed by time
/// retention (seven days by default) while the test runs.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// Creates a topic with `partitions` and config overrides; the answer must be success.
pub async fn create_topic(
    client: &mut Client,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let request = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            ),
    ]);
    let response = client.call(7, &request).await;
    assert_eq!(response.topics[0].error_code, 0, "{:?}", response.topics[0]);
}

/// One batch to partition 0 of `topic`.
pub fn produce_request(topic: &str, acks: i16, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records)),
            ])])
}

/// A fetch of partition 0 of `topic` from `offset`.
pub fn fetch_request(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}
