//! Events to containerd: one queue, forwarded in order over ttrpc to the
//! address containerd gives in TTRPC_ADDRESS (Events/Forward).

use containerd_shim_protos::protobuf::well_known_types::{any::Any, timestamp::Timestamp};
use containerd_shim_protos::protobuf::{Message, MessageField};
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

/// The event type of each topic the shim publishes. containerd's type URL
/// is the message's proto name; naming it here keeps protobuf reflection
/// (its descriptors are parsed into the heap on first use) out of the
/// long-lived shim.
pub fn type_url(topic: &str) -> &'static str {
    match topic {
        "/tasks/create" => "containerd.events.TaskCreate",
        "/tasks/start" => "containerd.events.TaskStart",
        "/tasks/exit" => "containerd.events.TaskExit",
        "/tasks/delete" => "containerd.events.TaskDelete",
        "/tasks/exec-added" => "containerd.events.TaskExecAdded",
        "/tasks/exec-started" => "containerd.events.TaskExecStarted",
        "/tasks/paused" => "containerd.events.TaskPaused",
        "/tasks/resumed" => "containerd.events.TaskResumed",
        "/tasks/oom" => "containerd.events.TaskOOM",
        _ => "",
    }
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

    pub fn publish<M: Message>(&self, topic: &'static str, event: &M) {
        let mut a = Any::new();
        a.type_url = type_url(topic).to_string();
        a.value = event.write_to_bytes().unwrap_or_default();
        let _ = self.tx.send(Some((topic, a)));
    }

    pub fn close(&self) {
        let _ = self.tx.send(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::events::task::*;
    use containerd_shim_protos::protobuf::MessageFull;

    #[test]
    fn type_urls_are_the_event_messages_names() {
        let pairs = [
            ("/tasks/create", TaskCreate::descriptor()),
            ("/tasks/start", TaskStart::descriptor()),
            ("/tasks/exit", TaskExit::descriptor()),
            ("/tasks/delete", TaskDelete::descriptor()),
            ("/tasks/exec-added", TaskExecAdded::descriptor()),
            ("/tasks/exec-started", TaskExecStarted::descriptor()),
            ("/tasks/paused", TaskPaused::descriptor()),
            ("/tasks/resumed", TaskResumed::descriptor()),
            ("/tasks/oom", TaskOOM::descriptor()),
        ];
        for (topic, d) in pairs {
            assert_eq!(type_url(topic), d.full_name(), "{topic}");
        }
        assert_eq!(type_url("/tasks/unknown"), "");
    }
}
