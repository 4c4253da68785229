//! Bundles: messages that apply together at commit, or not at all.
//!
//! Adds are sent with a barrier behind them, so an add the switch refuses
//! is known before commit and the caller can discard instead (Open vSwitch
//! would otherwise commit the bundle without the refused message). Errors
//! at commit time name the added message that failed: the commit claims the
//! xids of every add.

use tokio::sync::oneshot;

use super::conn::Command;
use super::{unexpected, Client};
use crate::codec::{BundleControl, BundleCtrlType, FlowMod, Message};
use crate::error::{Error, Result};

/// An open bundle. Messages added to it take effect at [`Bundle::commit`],
/// all together; [`Bundle::discard`] (or dropping it) throws them away.
#[derive(Debug)]
pub struct Bundle {
    pub(super) client: Client,
    pub(super) id: u32,
    pub(super) flags: u16,
    pub(super) history: Vec<(u32, Vec<Message>)>,
    pub(super) finished: bool,
}

impl Bundle {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Adds messages (followed by a barrier). If the switch refuses any of
    /// them the error lists which; the bundle stays open and should be
    /// discarded.
    pub async fn add(&mut self, messages: Vec<Message>) -> Result<()> {
        let mut wrapped: Vec<Message> = messages
            .into_iter()
            .map(|m| Message::BundleAdd {
                bundle_id: self.id,
                flags: self.flags,
                message: Box::new(m),
            })
            .collect();
        wrapped.push(Message::BarrierRequest);
        let done = self.client.exchange(wrapped, None, Vec::new()).await?;
        self.history.push((done.first_xid, done.messages));
        Ok(())
    }

    pub async fn add_flow_mods(&mut self, fms: Vec<FlowMod>) -> Result<()> {
        self.add(fms.into_iter().map(Message::FlowMod).collect())
            .await
    }

    /// Commits: every added message applies, or none does. Errors name the
    /// added message that failed.
    pub async fn commit(mut self) -> Result<()> {
        self.finished = true;
        let claim_from = self.history.first().map(|(x, _)| *x);
        let history = std::mem::take(&mut self.history);
        let done = self
            .client
            .exchange(
                vec![Message::BundleControl(BundleControl::new(
                    self.id,
                    BundleCtrlType::CommitRequest,
                    self.flags,
                ))],
                claim_from,
                history,
            )
            .await?;
        match done.replies.first() {
            Some(reply) => expect_bundle_reply(reply, BundleCtrlType::CommitReply),
            None => Err(Error::malformed("bundle commit reply", "empty")),
        }
    }

    /// Throws the bundle away.
    pub async fn discard(mut self) -> Result<()> {
        self.finished = true;
        let reply = self
            .client
            .request(Message::BundleControl(BundleControl::new(
                self.id,
                BundleCtrlType::DiscardRequest,
                self.flags,
            )))
            .await?;
        expect_bundle_reply(&reply, BundleCtrlType::DiscardReply)
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        if !self.finished {
            let (tx, _rx) = oneshot::channel();
            let _ = self.client.inner.commands.try_send(Command::Send {
                message: Message::BundleControl(BundleControl::new(
                    self.id,
                    BundleCtrlType::DiscardRequest,
                    self.flags,
                )),
                reply: tx,
            });
        }
    }
}

pub(super) fn expect_bundle_reply(reply: &Message, want: BundleCtrlType) -> Result<()> {
    match reply {
        Message::BundleControl(b) if b.ctrl_type == want => Ok(()),
        other => Err(unexpected("BUNDLE_CONTROL reply", other)),
    }
}
