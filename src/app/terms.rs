//! Overrides and grants as the admin API uses them: set, read and remove a customer's
//! override; add, list and revoke grants. Each change is one writer job, audited.

use super::{AppError, now_ms};
use crate::domain::Rules;
use crate::domain::ports::{GrantRecord, Store};
use crate::domain::terms::{self, Customer, GrantRefusal, Override};
use std::sync::Arc;

/// An account named by an override or a grant must exist; a user need not (terms may be set
/// before a user's first use).
fn check_customer(store: &Store, customer: Customer<'_>) -> Result<(), AppError> {
    if let Customer::Account(account_id) = customer
        && store.read(|reader| reader.find_account(account_id))?.is_none()
    {
        return Err(AppError::AccountNotFound(account_id.to_owned()));
    }
    Ok(())
}

fn owned(customer: Customer<'_>) -> (bool, String) {
    match customer {
        Customer::User(id) => (false, id.to_owned()),
        Customer::Account(id) => (true, id.to_owned()),
    }
}

fn borrowed((account, id): &(bool, String)) -> Customer<'_> {
    if *account { Customer::Account(id) } else { Customer::User(id) }
}

pub fn set_override(store: &Store, customer: Customer<'_>, over: Override, actor: &str) -> Result<(), AppError> {
    check_customer(store, customer)?;
    let (customer, actor) = (owned(customer), actor.to_owned());
    let now_ms = now_ms();
    Ok(store.write(move |tx| terms::set_override(tx, borrowed(&customer), &over, &actor, now_ms))?)
}

pub fn get_override(store: &Store, customer: Customer<'_>) -> Result<Override, AppError> {
    check_customer(store, customer)?;
    let found = store.read(|reader| reader.find_override(customer.key()))?;
    found
        .as_ref()
        .and_then(Override::from_record)
        .ok_or_else(|| AppError::OverrideNotFound(terms::audit_target(customer)))
}

pub fn remove_override(store: &Store, customer: Customer<'_>, actor: &str) -> Result<(), AppError> {
    check_customer(store, customer)?;
    let (owned_customer, actor) = (owned(customer), actor.to_owned());
    let now_ms = now_ms();
    let removed = store.write(move |tx| terms::remove_override(tx, borrowed(&owned_customer), &actor, now_ms))?;
    if removed { Ok(()) } else { Err(AppError::OverrideNotFound(terms::audit_target(customer))) }
}

/// Adds a grant (its customer fields are the customer's); answers its id.
pub fn add_grant(
    store: &Store,
    rules: &Arc<Rules>,
    customer: Customer<'_>,
    grant: GrantRecord,
    actor: &str,
) -> Result<i64, AppError> {
    check_customer(store, customer)?;
    let (customer, actor, rules) = (owned(customer), actor.to_owned(), Arc::clone(rules));
    let now_ms = now_ms();
    match store.write(move |tx| terms::add_grant(tx, &rules, borrowed(&customer), &grant, &actor, now_ms))? {
        Ok(grant_id) => Ok(grant_id),
        Err(GrantRefusal::NoEffect(reason)) => Err(AppError::GrantHasNoEffect(reason)),
    }
}

pub fn grants(store: &Store, customer: Customer<'_>) -> Result<Vec<GrantRecord>, AppError> {
    check_customer(store, customer)?;
    Ok(store.read(|reader| reader.grants(customer.key()))?)
}

pub fn revoke_grant(store: &Store, grant_id: i64, actor: &str) -> Result<GrantRecord, AppError> {
    let actor = actor.to_owned();
    let now_ms = now_ms();
    store.write(move |tx| terms::revoke_grant(tx, grant_id, &actor, now_ms))?.ok_or(AppError::GrantNotFound(grant_id))
}
