//! Events to containerd: one queue, forwarded in order over ttrpc to the
//! address containerd gives in TTRPC_ADDRESS (Events/Forward).

use containerd_shim_protos::protobuf::well_known_types::{any::Any, timestamp::Timestamp};
use containerd_shim_protos::protobuf::{MessageField, MessageFull};
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::EventsClient;
use tokio::sync::mpsc;

/// One event: its topic (`/tasks/exit`) and its message.
type Event = (&'static str, Any);

#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::UnboundedSender<Option<Event>>,
}

pub fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut t = Timestamp::new();
    t.seconds = d.as_secs() as i64;
    t.nanos = d.subsec_nanos() as i32;
    t
}

/// The Any of an event message: containerd's type URL is the proto name.
fn any_of<M: MessageFull>(m: &M) -> Any {
    let mut a = Any::new();
    a.type_url = M::descriptor().full_name().to_string();
    a.value = m.write_to_bytes().unwrap_or_default();
    a
}

impl Publisher {
    /// Starts the forwarding task; it ends after `close`.
    pub fn start(namespace: &str) -> (Publisher, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Option<Event>>();
        let namespace = namespace.to_string();
        let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        let task = tokio::spawn(async move {
            let mut client: Option<EventsClient> = None;
            while let Some(Some((topic, event))) = rx.recv().await {
                if address.is_empty() {
                    continue;
                }
                let mut env = Envelope::new();
                env.timestamp = MessageField::some(now());
                env.namespace = namespace.clone();
                env.topic = topic.to_string();
                env.event = MessageField::some(event);
                let mut req = ForwardRequest::new();
                req.envelope = MessageField::some(env);
                // containerd may be restarting: retry for a while.
                for attempt in 0..50 {
                    if client.is_none() {
                        client = ttrpc::asynchronous::Client::connect(&format!("unix://{address}"))
                            .await
                            .ok()
                            .map(EventsClient::new);
                    }
                    if let Some(c) = &client {
                        let ctx = ttrpc::context::with_timeout(5_000_000_000);
                        match c.forward(ctx, &req).await {
                            Ok(_) => break,
                            Err(e) => {
                                crate::io::log(&format!(
                                    "forwarding {topic} (attempt {attempt}): {e}"
                                ));
                                client = None;
                            }
                        }
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        });
        (Publisher { tx }, task)
    }

    pub fn publish<M: MessageFull>(&self, topic: &'static str, event: &M) {
        let _ = self.tx.send(Some((topic, any_of(event))));
    }

    pub fn close(&self) {
        let _ = self.tx.send(None);
    }
}
