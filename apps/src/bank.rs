//! Accounts and transfers: the state machine of `horus demo rsm`, the smallest service where
//! order matters. A transfer succeeds only if its source holds enough, so two transfers from
//! one account can each be valid alone and not together: applied in different orders, two
//! replicas would refuse different ones and part ways. On the replicated state machine every
//! replica refuses the same ones, and money is neither made nor lost by transfers.

use std::collections::BTreeMap;

use horus::{Endpoint, Error, Group};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::appmember::{arg_str, BoxFuture, Handler};
use crate::rsm::{Rsm, StateMachine};

/// A command to the bank.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BankCommand {
    /// Opens `account` with `amount` (or adds to it): the only way money enters.
    Deposit { account: String, amount: u64 },
    /// Moves `amount` from one account to another, if `from` holds that much.
    Transfer { from: String, to: String, amount: u64 },
    /// Reads a balance in the order (a linearizable read).
    Balance { account: String },
}

/// What a command returns: the balance of the account it names first, or why it was refused.
pub type BankReply = Result<u64, String>;

/// The accounts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bank {
    accounts: BTreeMap<String, u64>,
    refused: u64,
    deposited: u64,
}

impl Bank {
    /// Every account and its balance.
    pub fn accounts(&self) -> &BTreeMap<String, u64> {
        &self.accounts
    }

    /// The money in the bank.
    pub fn total(&self) -> u64 {
        self.accounts.values().sum()
    }

    /// The money deposited: what [`total`](Self::total) must always be.
    pub fn deposited(&self) -> u64 {
        self.deposited
    }

    /// Transfers refused for want of funds.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

impl StateMachine for Bank {
    type Command = BankCommand;
    type Reply = BankReply;

    fn apply(&mut self, _origin: Endpoint, command: BankCommand) -> BankReply {
        match command {
            BankCommand::Deposit { account, amount } => {
                let balance = self.accounts.entry(account).or_default();
                let amount = amount.min(u64::MAX - self.deposited).min(u64::MAX - *balance);
                *balance += amount;
                self.deposited += amount;
                Ok(*balance)
            }
            BankCommand::Transfer { from, to, amount } => {
                let have = self.accounts.get(&from).copied().unwrap_or(0);
                if have < amount || !self.accounts.contains_key(&to) || from == to {
                    self.refused += 1;
                    return Err(format!("{from} holds {have}: cannot move {amount} to {to}"));
                }
                self.accounts.insert(from, have - amount);
                // Cannot overflow: every balance is part of `deposited`.
                *self.accounts.entry(to).or_default() += amount;
                Ok(have - amount)
            }
            BankCommand::Balance { account } => {
                self.accounts.get(&account).copied().ok_or(format!("no account {account}"))
            }
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        postcard::to_allocvec(&(&self.accounts, self.refused, self.deposited)).unwrap_or_default()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let (accounts, refused, deposited) =
            postcard::from_bytes(state).map_err(|e| format!("not a bank: {e}"))?;
        (self.accounts, self.refused, self.deposited) = (accounts, refused, deposited);
        Ok(())
    }
}

/// Starts the bank on `group`, for `horus app-member --app rsm`.
pub fn start(group: Group) -> Rsm<Bank> {
    Rsm::start(group, Bank::default())
}

fn amount(args: &Value) -> Result<u64, String> {
    args.get("amount").and_then(Value::as_u64).ok_or_else(|| "missing `amount`".into())
}

impl Handler for Rsm<Bank> {
    fn handle(&self, op: String, args: Value) -> BoxFuture<Result<Value, String>> {
        let rsm = self.clone();
        Box::pin(async move {
            let e = |e: Error| e.to_string();
            let reply = |r: BankReply| match r {
                Ok(balance) => json!({"balance": balance}),
                Err(why) => json!({"refused": why}),
            };
            match op.as_str() {
                "deposit" => {
                    let command = BankCommand::Deposit {
                        account: arg_str(&args, "account")?,
                        amount: amount(&args)?,
                    };
                    Ok(reply(rsm.execute(command).await.map_err(e)?))
                }
                "transfer" => {
                    let command = BankCommand::Transfer {
                        from: arg_str(&args, "from")?,
                        to: arg_str(&args, "to")?,
                        amount: amount(&args)?,
                    };
                    Ok(reply(rsm.execute(command).await.map_err(e)?))
                }
                "balance" => {
                    let command = BankCommand::Balance { account: arg_str(&args, "account")? };
                    Ok(reply(rsm.execute(command).await.map_err(e)?))
                }
                "local" => {
                    let (accounts, total, refused) = rsm
                        .read(|b| (b.accounts().clone(), b.total(), b.refused()))
                        .await
                        .map_err(e)?;
                    let (applied, digest) =
                        rsm.inspect(|r| (r.applied(), r.digest())).await.map_err(e)?;
                    Ok(json!({"accounts": accounts, "total": total, "refused": refused,
                              "applied": applied, "digest": format!("{digest:016x}")}))
                }
                other => Err(format!("the bank has no operation `{other}`")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_keep_the_money_and_refuse_overdrafts() {
        let e = Endpoint::new(1, 0);
        let mut b = Bank::default();
        let dep = |a: &str| BankCommand::Deposit { account: a.into(), amount: 100 };
        assert_eq!(b.apply(e, dep("a")), Ok(100));
        assert_eq!(b.apply(e, dep("b")), Ok(100));
        let t = |amount| BankCommand::Transfer { from: "a".into(), to: "b".into(), amount };
        assert_eq!(b.apply(e, t(70)), Ok(30));
        assert!(b.apply(e, t(70)).is_err(), "a holds 30");
        assert_eq!((b.total(), b.refused()), (200, 1));
        let mut c = Bank::default();
        c.restore(&b.snapshot()).unwrap();
        assert_eq!(c, b);
        assert!(c.restore(b"\xff\xff").is_err());
    }
}
