//! Heap allocations on the review hot path, counted exactly.
//!
//! Every write to a matching resource in the cluster passes through decode → decide →
//! encode, and under load each allocation there costs as much as a few hundred bytes of
//! JSON parsing. Wall time on a shared machine moves by 15% from run to run; allocation
//! counts do not, so this is where a regression (say, decoding the whole object again)
//! shows up. The budgets are today's counts: lower one when you remove an allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::task::{Context, Poll, Waker};

use common::{compact_fixture, example_webhook};
use nsguard::admission::{self, Endpoint, Webhook};
use nsguard::decisions::placement::PlacementMode;

mod common;

/// Counts the allocations of the current thread while it is armed.
struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: the allocator also runs while thread-locals are being torn down.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The allocations (and reallocations) `f` makes on this thread.
fn allocations<T>(f: impl FnOnce() -> T) -> (T, usize) {
    COUNT.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    let out = f();
    ARMED.with(|a| a.set(false));
    (out, COUNT.with(Cell::get))
}

/// Poll a future that must not wait (placement never does) to completion, without a
/// runtime: tokio's `block_on` boxes large futures, which would be counted.
fn ready<F: Future>(future: F) -> F::Output {
    let mut context = Context::from_waker(Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the review waited: placement has nothing to wait for"),
    }
}

/// Allocations of decode, decide and encode for one review, each counted on its own.
fn count_review(webhook: &Webhook, endpoint: Endpoint, body: &[u8]) -> [usize; 3] {
    // Warm up once, in case the first review initialises anything lazily.
    let request = admission::decode(body).unwrap();
    ready(webhook.review(endpoint, &request)).encode();

    let (request, decode) = allocations(|| admission::decode(body).unwrap());
    let (response, decide) = allocations(|| ready(webhook.review(endpoint, &request)));
    let (encoded, encode) = allocations(|| response.encode());
    assert!(!encoded.is_empty());
    [decode, decide, encode]
}

/// Each of [decode, decide, encode] within its budget.
fn assert_within(case: &str, got: [usize; 3], budget: [usize; 3]) {
    assert!(
        got.iter().zip(budget).all(|(&got, budget)| got <= budget),
        "{case}: allocations [decode, decide, encode] = {got:?}, over the budget {budget:?}"
    );
}

#[test]
fn the_counter_counts() {
    let (v, n) = allocations(|| vec![1u8; 64]);
    assert_eq!((v.len(), n), (64, 1));
    let ((), n) = allocations(|| ());
    assert_eq!(n, 0);
}

#[test]
fn deployment_create_in_warn_mode() {
    let body = compact_fixture("deployment-create.json");
    let got = count_review(
        &example_webhook(PlacementMode::Warn),
        Endpoint::Validate,
        &body,
    );
    // decode: the labels and annotations maps and userInfo.groups. decide: the
    // misplacement (owner app-name and env, parent env, current and target namespace),
    // the object's name, the warning and its list. encode: the output buffer.
    assert_within("warn", got, [4, 8, 1]);
}

#[test]
fn deployment_create_in_rewrite_mode() {
    let body = compact_fixture("mutating/deployment-create.json");
    let got = count_review(
        &example_webhook(PlacementMode::Rewrite),
        Endpoint::Mutate,
        &body,
    );
    // decide: the misplacement and the JSON Patch, built and serialized. encode: the
    // patch in base64 and the output buffer.
    assert_within("rewrite", got, [4, 12, 2]);
}

/// The Deployment CREATE moved to the namespace it belongs in.
fn placed_deployment_create() -> Vec<u8> {
    let mut review: serde_json::Value =
        serde_json::from_slice(&compact_fixture("deployment-create.json")).unwrap();
    let target = "pay-space-wallet-tenant-a";
    review["request"]["namespace"] = target.into();
    review["request"]["object"]["metadata"]["namespace"] = target.into();
    serde_json::to_vec(&review).unwrap()
}

#[test]
fn objects_with_nothing_to_answer_cost_no_decision_allocations() {
    // The steady state of a healthy cluster: sub-env objects already in their namespace,
    // and objects placement does not apply to.
    let webhook = example_webhook(PlacementMode::Warn);
    for (name, body) in [
        ("placed deployment", placed_deployment_create()),
        ("namespace", compact_fixture("namespace-create.json")),
    ] {
        let got = count_review(&webhook, Endpoint::Validate, &body);
        assert_within(name, got, [4, 0, 1]);
    }
}

/// The future of one review is set up, and moved, for every review: a decision's lookup
/// that awaits in place makes it as large as that lookup's state for every placement
/// review too (the volume guard's, unboxed, cost 8.6% more instructions per review:
/// benches/instructions_per_review.sh). The guards' lookups are boxed: 32 bytes today.
#[test]
fn a_reviews_future_stays_small() {
    let webhook = example_webhook(PlacementMode::Warn);
    let body = compact_fixture("deployment-create.json");
    let request = admission::decode(&body).unwrap();
    let size = std::mem::size_of_val(&webhook.review(Endpoint::Validate, &request));
    assert!(
        size <= 256,
        "a review's future is {size} bytes: box the lookup that grew it"
    );
}
