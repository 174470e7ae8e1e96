//! The answer to a submitted append: block on it with [`AppendTicket::wait`] or `.await` it.

use crate::append::Appended;
use crate::error::AppendError;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

pub(crate) type Reply = Result<Appended, AppendError>;

/// A submitted append. It resolves once the group commit holding the append is durable (or
/// once the append is refused). Dropping it does not cancel the append.
#[must_use = "an append ticket does nothing unless waited for or awaited"]
#[derive(Debug)]
pub struct AppendTicket {
    state: State,
}

#[derive(Debug)]
enum State {
    Ready(Option<Reply>),
    Pending {
        receiver: oneshot::AsyncReceiver<Reply>,
        dir: Arc<Path>,
    },
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

impl AppendTicket {
    /// A ticket that already holds its answer.
    pub(crate) fn ready(reply: Reply) -> Self {
        Self {
            state: State::Ready(Some(reply)),
        }
    }

    /// A ticket answered later through the returned sender.
    pub(crate) fn pending(dir: Arc<Path>) -> (oneshot::Sender<Reply>, Self) {
        let (sender, receiver) = oneshot::async_channel();
        (
            sender,
            Self {
                state: State::Pending { receiver, dir },
            },
        )
    }

    /// Blocks the calling thread until the append is durable or refused.
    pub fn wait(mut self) -> Result<Appended, AppendError> {
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(reply) = Pin::new(&mut self).poll(&mut cx) {
                return reply;
            }
            std::thread::park();
        }
    }
}

impl Future for AppendTicket {
    type Output = Result<Appended, AppendError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            State::Ready(reply) => Poll::Ready(
                reply
                    .take()
                    .expect("an append ticket was polled after it completed"),
            ),
            State::Pending { receiver, dir } => match Pin::new(receiver).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(reply)) => Poll::Ready(reply),
                // The writer dropped the request without answering: it stopped.
                Poll::Ready(Err(oneshot::RecvError)) => {
                    Poll::Ready(Err(AppendError::WriterStopped {
                        dir: dir.to_path_buf(),
                    }))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_returns_the_reply_sent_from_another_thread() {
        let (tx, ticket) = AppendTicket::pending(Path::new("/d").into());
        let a = Appended {
            first_seq: 1,
            last_seq: 2,
            first_position: 3,
            last_position: 4,
        };
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(Ok(a)).unwrap();
        });
        assert_eq!(ticket.wait().unwrap(), a);
        t.join().unwrap();
    }

    #[test]
    fn a_dropped_sender_means_the_writer_stopped() {
        let (tx, ticket) = AppendTicket::pending(Path::new("/d").into());
        drop(tx);
        assert!(matches!(
            ticket.wait(),
            Err(AppendError::WriterStopped { .. })
        ));
    }
}
