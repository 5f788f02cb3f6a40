//! Wallets and their ledger. Every movement of money is a ledger entry whose id
//! (`txId`) is derived from what caused it, so a retried step finds its own entry
//! instead of moving money twice.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::id::{PaymentId, RefundId, TopUpId, TxnId, UserId};
use super::money::{Currency, Money, MoneyError};
use super::timestamp::Timestamp;

/// `userId#currency`: the partition of one wallet's ledger. `#` cannot occur in
/// a user id, so the key is unambiguous.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WalletKey {
    pub user_id: UserId,
    pub currency: Currency,
}

impl WalletKey {
    pub fn new(user_id: UserId, currency: Currency) -> Self {
        Self { user_id, currency }
    }
}

impl fmt::Display for WalletKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.user_id, self.currency)
    }
}

impl fmt::Debug for WalletKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WalletKey({self})")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wallet {
    pub user_id: UserId,
    pub balance: Money,
    /// Increments with every movement; writes are conditioned on it.
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Wallet {
    /// A new, empty wallet. Money only ever enters through a ledger entry.
    pub fn open(user_id: UserId, currency: Currency, at: Timestamp) -> Self {
        Self {
            user_id,
            balance: Money::zero(currency),
            version: 0,
            created_at: at,
            updated_at: at,
        }
    }

    pub fn currency(&self) -> Currency {
        self.balance.currency()
    }

    pub fn key(&self) -> WalletKey {
        WalletKey::new(self.user_id.clone(), self.currency())
    }

    /// The wallet after `movement` and the ledger entry that records it. Pure:
    /// both stores call this and then write the pair atomically.
    pub fn apply(
        &self,
        movement: &Movement,
        at: Timestamp,
    ) -> Result<(Wallet, LedgerEntry), MovementError> {
        // A movement for another user reaching this wallet is a caller bug.
        assert_eq!(
            movement.user_id, self.user_id,
            "movement applied to another user's wallet"
        );
        if movement.amount.currency() != self.currency() {
            return Err(MovementError::CurrencyMismatch {
                wallet: self.currency(),
                movement: movement.amount.currency(),
            });
        }
        let balance_after = if movement.kind().is_credit() {
            self.balance.checked_add(&movement.amount)?
        } else {
            self.balance.checked_sub(&movement.amount).map_err(|_| {
                MovementError::InsufficientFunds {
                    balance: self.balance,
                    requested: movement.amount,
                }
            })?
        };
        let next = Wallet {
            balance: balance_after,
            version: self.version.saturating_add(1),
            updated_at: at,
            ..self.clone()
        };
        let entry = LedgerEntry {
            user_id: self.user_id.clone(),
            tx_id: movement.tx_id(),
            entry_id: TxnId::generate(),
            kind: movement.kind(),
            amount: movement.amount,
            balance_after,
            reference: movement.reference,
            created_at: at,
        };
        Ok((next, entry))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MovementError {
    #[error("insufficient funds: balance {balance}, requested {requested}")]
    InsufficientFunds { balance: Money, requested: Money },
    #[error("wallet is in {wallet}, movement is in {movement}")]
    CurrencyMismatch {
        wallet: Currency,
        movement: Currency,
    },
    #[error(transparent)]
    Money(#[from] MoneyError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MovementKind {
    /// A payment takes money from the wallet.
    Debit,
    /// The saga gives back a debit whose payment failed.
    Compensation,
    /// A customer refund of a completed payment.
    Refund,
    /// An operator credit.
    #[serde(rename = "TOPUP")]
    TopUp,
}

impl MovementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debit => "DEBIT",
            Self::Compensation => "COMPENSATION",
            Self::Refund => "REFUND",
            Self::TopUp => "TOPUP",
        }
    }

    pub fn is_credit(self) -> bool {
        match self {
            Self::Debit => false,
            Self::Compensation | Self::Refund | Self::TopUp => true,
        }
    }
}

/// What caused a movement; determines its kind and its deterministic `txId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase"
)]
pub enum MovementRef {
    Debit {
        payment_id: PaymentId,
    },
    Compensation {
        payment_id: PaymentId,
    },
    Refund {
        refund_id: RefundId,
        payment_id: PaymentId,
    },
    #[serde(rename = "TOPUP")]
    TopUp {
        top_up_id: TopUpId,
    },
}

impl MovementRef {
    pub fn kind(&self) -> MovementKind {
        match self {
            Self::Debit { .. } => MovementKind::Debit,
            Self::Compensation { .. } => MovementKind::Compensation,
            Self::Refund { .. } => MovementKind::Refund,
            Self::TopUp { .. } => MovementKind::TopUp,
        }
    }

    /// `pay_X#DEBIT`, `pay_X#COMPENSATION`, `ref_Y#REFUND`, `top_Z#TOPUP`.
    pub fn tx_id(&self) -> String {
        let kind = self.kind().as_str();
        match self {
            Self::Debit { payment_id } | Self::Compensation { payment_id } => {
                format!("{payment_id}#{kind}")
            }
            Self::Refund { refund_id, .. } => format!("{refund_id}#{kind}"),
            Self::TopUp { top_up_id } => format!("{top_up_id}#{kind}"),
        }
    }

    /// Money given back for a payment must have left through that payment's
    /// debit: compensations and refunds name the debit they return.
    pub fn debit_returned(&self) -> Option<PaymentId> {
        match self {
            Self::Compensation { payment_id } | Self::Refund { payment_id, .. } => {
                Some(*payment_id)
            }
            Self::Debit { .. } | Self::TopUp { .. } => None,
        }
    }

    pub fn payment_id(&self) -> Option<PaymentId> {
        match self {
            Self::Debit { payment_id }
            | Self::Compensation { payment_id }
            | Self::Refund { payment_id, .. } => Some(*payment_id),
            Self::TopUp { .. } => None,
        }
    }
}

/// A request to move money in one wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    pub user_id: UserId,
    pub amount: Money,
    pub reference: MovementRef,
}

impl Movement {
    pub fn debit(user_id: UserId, payment_id: PaymentId, amount: Money) -> Self {
        Self {
            user_id,
            amount,
            reference: MovementRef::Debit { payment_id },
        }
    }

    pub fn compensation(user_id: UserId, payment_id: PaymentId, amount: Money) -> Self {
        Self {
            user_id,
            amount,
            reference: MovementRef::Compensation { payment_id },
        }
    }

    pub fn refund(
        user_id: UserId,
        refund_id: RefundId,
        payment_id: PaymentId,
        amount: Money,
    ) -> Self {
        Self {
            user_id,
            amount,
            reference: MovementRef::Refund {
                refund_id,
                payment_id,
            },
        }
    }

    pub fn top_up(user_id: UserId, top_up_id: TopUpId, amount: Money) -> Self {
        Self {
            user_id,
            amount,
            reference: MovementRef::TopUp { top_up_id },
        }
    }

    pub fn kind(&self) -> MovementKind {
        self.reference.kind()
    }

    pub fn tx_id(&self) -> String {
        self.reference.tx_id()
    }

    pub fn wallet_key(&self) -> WalletKey {
        WalletKey::new(self.user_id.clone(), self.amount.currency())
    }

    /// The `txId` of the debit a compensation or refund returns.
    pub fn debit_tx_id(&self) -> Option<String> {
        self.reference
            .debit_returned()
            .map(|payment_id| MovementRef::Debit { payment_id }.tx_id())
    }

    /// For a debit, its own `txId`: the key a [`DebitClosure`] would hold,
    /// which refuses the debit. `None` for every other movement.
    pub fn closable_tx_id(&self) -> Option<String> {
        match self.kind() {
            MovementKind::Debit => Some(self.tx_id()),
            MovementKind::Compensation | MovementKind::Refund | MovementKind::TopUp => None,
        }
    }
}

/// A payment's debit, closed by a compensation that found no debit to give
/// back.
///
/// Why: "nothing to compensate" used to write nothing, so a debit of the same
/// payment arriving afterwards (a timed-out attempt still running, a duplicate
/// execution) took money that no compensation would ever give back. Now the
/// compensation leaves this durable marker, and every debit is conditioned on
/// its absence inside the debit's own store transaction (never a read, then a
/// write). Exactly one order wins: the debit commits first (the compensation
/// then finds it and gives it back), or the closure does (the debit is then
/// refused with `PaymentCompensated`, a final answer).
///
/// Why not a ledger entry: a closure moves no money. Keeping it out of the
/// ledger keeps `balance = sum of entries` true by construction, keeps every
/// entry's amount positive, and leaves ledger listings showing only money. It
/// is keyed by the wallet and the `txId` of the debit it closes
/// (`pay_X#DEBIT`); how each store lays that out is documented with the store.
/// A closure is written once and never removed, even when the wallet does not
/// exist yet (one may be opened later, and a late debit would find money).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebitClosure {
    pub user_id: UserId,
    pub currency: Currency,
    pub payment_id: PaymentId,
    pub created_at: Timestamp,
}

impl DebitClosure {
    /// The closure a compensation leaves when it finds no debit; `None` for
    /// any other movement (only the saga's compensation closes a debit).
    pub fn by(movement: &Movement, at: Timestamp) -> Option<Self> {
        match movement.reference {
            MovementRef::Compensation { payment_id } => Some(Self {
                user_id: movement.user_id.clone(),
                currency: movement.amount.currency(),
                payment_id,
                created_at: at,
            }),
            MovementRef::Debit { .. } | MovementRef::Refund { .. } | MovementRef::TopUp { .. } => {
                None
            }
        }
    }

    pub fn wallet_key(&self) -> WalletKey {
        WalletKey::new(self.user_id.clone(), self.currency)
    }

    /// `pay_X#DEBIT`: the `txId` no debit may take any more.
    pub fn debit_tx_id(&self) -> String {
        MovementRef::Debit {
            payment_id: self.payment_id,
        }
        .tx_id()
    }
}

/// One immutable ledger entry. `amount` is always positive; `kind` says the
/// direction. `balance_after` is the wallet balance right after this entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    pub user_id: UserId,
    pub tx_id: String,
    pub entry_id: TxnId,
    pub kind: MovementKind,
    pub amount: Money,
    pub balance_after: Money,
    pub reference: MovementRef,
    pub created_at: Timestamp,
}

impl LedgerEntry {
    pub fn wallet_key(&self) -> WalletKey {
        WalletKey::new(self.user_id.clone(), self.amount.currency())
    }

    /// `+amount` for credits, `-amount` for debits.
    pub fn signed_amount(&self) -> Decimal {
        if self.kind.is_credit() {
            self.amount.amount()
        } else {
            -self.amount.amount()
        }
    }

    /// Whether this entry is a debit that `movement` may give back: a
    /// compensation returns exactly its debit, a refund at most the debit.
    pub fn is_returnable_by(&self, movement: &Movement) -> bool {
        let same_currency = self.amount.currency() == movement.amount.currency();
        let amount_ok = match movement.kind() {
            MovementKind::Compensation => self.amount == movement.amount,
            MovementKind::Refund => movement.amount.amount() <= self.amount.amount(),
            MovementKind::Debit | MovementKind::TopUp => false,
        };
        self.kind == MovementKind::Debit && same_currency && amount_ok
    }

    /// Whether this entry records exactly `movement` (a replay), as opposed to a
    /// different movement that collides on the same `txId`.
    pub fn records(&self, movement: &Movement) -> bool {
        self.user_id == movement.user_id
            && self.amount == movement.amount
            && self.reference == movement.reference
    }
}

/// The result of applying a movement: the entry (new or found) and whether it
/// was a replay of an earlier identical request that moved nothing this time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MovementReceipt {
    pub entry: LedgerEntry,
    pub replayed: bool,
}

/// Balance = sum of ledger entries, the invariant every store must keep.
pub fn ledger_sum(entries: &[LedgerEntry]) -> Decimal {
    entries.iter().map(LedgerEntry::signed_amount).sum()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn user() -> UserId {
        UserId::parse("user_1").unwrap()
    }

    fn usd(text: &str) -> Money {
        Money::parse(text, "USD").unwrap()
    }

    #[test]
    fn tx_ids_are_deterministic_per_cause() {
        let payment_id = PaymentId::generate();
        let debit = Movement::debit(user(), payment_id, usd("10"));
        assert_eq!(debit.tx_id(), format!("{payment_id}#DEBIT"));
        let compensation = Movement::compensation(user(), payment_id, usd("10"));
        assert_eq!(compensation.tx_id(), format!("{payment_id}#COMPENSATION"));
        assert_eq!(compensation.debit_tx_id(), Some(debit.tx_id()));
        let refund_id = RefundId::generate();
        let refund = Movement::refund(user(), refund_id, payment_id, usd("1"));
        assert_eq!(refund.tx_id(), format!("{refund_id}#REFUND"));
        let top_up_id = TopUpId::generate();
        assert_eq!(
            Movement::top_up(user(), top_up_id, usd("1")).tx_id(),
            format!("{top_up_id}#TOPUP")
        );
    }

    #[test]
    fn debit_beyond_balance_is_insufficient_funds() {
        let wallet = Wallet::open(user(), usd("0").currency(), Timestamp::now());
        let debit = Movement::debit(user(), PaymentId::generate(), usd("0.01"));
        let err = wallet.apply(&debit, Timestamp::now()).unwrap_err();
        assert!(matches!(err, MovementError::InsufficientFunds { .. }));
    }

    #[test]
    fn apply_moves_balance_and_records_balance_after() {
        let wallet = Wallet::open(user(), usd("0").currency(), Timestamp::now());
        let top_up = Movement::top_up(user(), TopUpId::generate(), usd("100"));
        let (wallet, entry) = wallet.apply(&top_up, Timestamp::now()).unwrap();
        assert_eq!(wallet.balance, usd("100"));
        assert_eq!(wallet.version, 1);
        assert_eq!(entry.balance_after, usd("100"));
        let debit = Movement::debit(user(), PaymentId::generate(), usd("30.25"));
        let (wallet, entry) = wallet.apply(&debit, Timestamp::now()).unwrap();
        assert_eq!(wallet.balance, usd("69.75"));
        assert_eq!(entry.signed_amount(), -usd("30.25").amount());
        assert!(entry.records(&debit));
        assert!(!entry.records(&Movement {
            amount: usd("30.26"),
            ..debit
        }));
    }

    #[test]
    fn currency_mismatch_is_refused() {
        let wallet = Wallet::open(user(), usd("0").currency(), Timestamp::now());
        let yen = Money::parse("100", "JPY").unwrap();
        let err = wallet.apply(
            &Movement::top_up(user(), TopUpId::generate(), yen),
            Timestamp::now(),
        );
        assert!(matches!(err, Err(MovementError::CurrencyMismatch { .. })));
    }

    #[test]
    fn only_a_compensation_closes_a_debit_and_only_a_debit_is_closable() {
        // GIVEN one payment's movements
        let payment_id = PaymentId::generate();
        let debit = Movement::debit(user(), payment_id, usd("10"));
        let compensation = Movement::compensation(user(), payment_id, usd("10"));
        let refund = Movement::refund(user(), RefundId::generate(), payment_id, usd("1"));
        // WHEN a compensation finds no debit THEN its closure holds the debit's txId
        let closure = DebitClosure::by(&compensation, Timestamp::now()).unwrap();
        assert_eq!(Some(closure.debit_tx_id()), debit.closable_tx_id());
        assert_eq!(closure.wallet_key(), debit.wallet_key());
        // AND no other movement closes a debit, and only a debit can be closed
        assert!(DebitClosure::by(&debit, Timestamp::now()).is_none());
        assert!(DebitClosure::by(&refund, Timestamp::now()).is_none());
        assert_eq!(compensation.closable_tx_id(), None);
        assert_eq!(refund.closable_tx_id(), None);
    }

    #[test]
    fn movement_ref_serializes_with_its_kind() {
        let payment_id = PaymentId::generate();
        let json = serde_json::to_value(MovementRef::Debit { payment_id }).unwrap();
        assert_eq!(json["kind"], "DEBIT");
        assert_eq!(json["paymentId"], payment_id.to_string());
        let back: MovementRef = serde_json::from_value(json).unwrap();
        assert_eq!(back, MovementRef::Debit { payment_id });
    }
}
