//! A poison event's way through the dead-letter topic and back: the handler gives up on it, later
//! events on its partition are processed, `nerve dlq list|show` tell an operator what died and why,
//! `nerve dlq replay` puts it back on its topic, and the fixed handler processes it, with its envelope.

mod common;

use common::{cluster, nerve, receive, unique};
use nerve_sdk::{
    dlq, ConsumerBuilder, Event, EventContext, Handler, HandlerError, JsonCodec, Publisher,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PaymentReceived {
    account: String,
    amount_cents: i64,
}

impl Event for PaymentReceived {
    const NAME: &'static str = "bank.PaymentReceived";
    const VERSION: u32 = 1;

    fn key(&self) -> Option<String> {
        Some(self.account.clone())
    }
}

/// Version 1 cannot book a negative payment (a refund); version 2 can.
struct Ledger {
    books_refunds: bool,
    booked: mpsc::UnboundedSender<(EventContext, PaymentReceived)>,
}

#[async_trait::async_trait]
impl Handler<PaymentReceived> for Ledger {
    async fn handle(&self, ctx: &EventContext, p: PaymentReceived) -> Result<(), HandlerError> {
        if p.amount_cents < 0 && !self.books_refunds {
            return Err(HandlerError::permanent(
                "negative amount: refunds are not booked",
            ));
        }
        let _ = self.booked.send((ctx.clone(), p));
        Ok(())
    }

    fn name(&self) -> String {
        format!("ledger-v{}", if self.books_refunds { 2 } else { 1 })
    }
}

fn payment(account: &str, amount_cents: i64) -> PaymentReceived {
    PaymentReceived {
        account: account.into(),
        amount_cents,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_is_listed_shown_replayed_and_then_processed_by_the_fixed_handler() {
    let cluster = cluster();
    let topic = unique("payments");
    let group = unique("ledger");
    cluster.create_topic(&topic, 1).await;
    let publisher = Publisher::new(&cluster.config(), &topic, JsonCodec).expect("publisher");
    publisher.publish(&payment("acc-1", 500)).await.unwrap();
    let refund = publisher.publish(&payment("acc-1", -200)).await.unwrap();
    publisher.publish(&payment("acc-1", 700)).await.unwrap();

    let (booked, mut seen) = mpsc::unbounded_channel();
    let v1 = ConsumerBuilder::new(&cluster.group_config(&group), JsonCodec)
        .subscribe(&topic)
        .handler(Ledger {
            books_refunds: false,
            booked,
        })
        .start()
        .expect("started");
    let handled = receive(&mut seen, 2).await;
    assert_eq!(
        handled
            .iter()
            .map(|(_, p)| p.amount_cents)
            .collect::<Vec<_>>(),
        [500, 700],
        "the partition moved on past the refund"
    );
    v1.shutdown().await.expect("clean shutdown");

    // What an operator sees.
    let (ok, listed, stderr) = nerve(&cluster.bootstrap, &["dlq", "list", &topic]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one dead letter:\n{listed}");
    let cells: Vec<&str> = lines[1]
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        &cells[..5],
        [
            "0",
            "0",
            &format!("{topic}/0@{}", refund.offset)[..],
            "1",
            "ledger-v1"
        ]
    );
    assert!(
        lines[1].ends_with("negative amount: refunds are not booked"),
        "{}",
        lines[1]
    );

    let (ok, shown, stderr) = nerve(
        &cluster.bootstrap,
        &["dlq", "show", &topic, "--offset", "0"],
    );
    assert!(ok, "{stderr}");
    for expected in [
        "error: negative amount: refunds are not booked".to_string(),
        "attempts: 1".to_string(),
        format!("original offset: {}", refund.offset),
        format!("  nerve-event-id={}", refund.event_id),
        "key: acc-1".to_string(),
        r#"value: {"account":"acc-1","amount_cents":-200}"#.to_string(),
    ] {
        assert!(
            shown.lines().any(|l| l == expected),
            "no {expected:?} in\n{shown}"
        );
    }
    let (ok, _, stderr) = nerve(
        &cluster.bootstrap,
        &["dlq", "show", &topic, "--offset", "9"],
    );
    assert!(
        !ok && stderr.contains("no dead letter at offset 9"),
        "{stderr}"
    );

    // The fix is deployed; the refund goes back to its topic.
    let (ok, replayed, stderr) = nerve(
        &cluster.bootstrap,
        &["dlq", "replay", &topic, "--offset", "0"],
    );
    assert!(ok, "{stderr}");
    assert_eq!(
        replayed.trim(),
        format!("replayed {}/0@0 to {topic}", dlq::dlq_topic(&topic))
    );

    let (booked, mut seen) = mpsc::unbounded_channel();
    let v2 = ConsumerBuilder::new(&cluster.group_config(&group), JsonCodec)
        .subscribe(&topic)
        .handler(Ledger {
            books_refunds: true,
            booked,
        })
        .start()
        .expect("started");
    let handled = receive(&mut seen, 1).await;
    let (ctx, refunded) = &handled[0];
    assert_eq!(refunded, &payment("acc-1", -200));
    assert_eq!(
        ctx.envelope.event_id, refund.event_id,
        "the same event, not a new one"
    );
    assert_eq!(ctx.offset, 3, "appended after the events that were handled");
    v2.shutdown().await.expect("clean shutdown");

    let replayed_record = cluster
        .read_all(&topic)
        .into_iter()
        .find(|r| r.offset == 3)
        .expect("the replayed record");
    assert_eq!(
        replayed_record.header("nerve-dlq-replayed-from"),
        Some(format!("{}/0@0", dlq::dlq_topic(&topic)).as_str())
    );
    assert_eq!(
        replayed_record.header(dlq::ERROR),
        None,
        "the dead-letter headers stay behind"
    );
}

#[test]
fn a_topic_without_dead_letters_says_so() {
    let cluster = cluster();
    let (ok, _, stderr) = nerve(
        &cluster.bootstrap,
        &["dlq", "list", &unique("never-failed")],
    );
    assert!(!ok);
    assert!(stderr.contains("nothing has died there"), "{stderr}");
}
