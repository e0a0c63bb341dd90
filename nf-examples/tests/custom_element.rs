//! The README's custom element, as a user's own binary would run it (`examples/ttl_floor.rs`).

#[path = "../examples/ttl_floor.rs"]
mod ttl_floor;

#[test]
fn a_class_of_ones_own_runs_from_a_configuration() {
    let router = ttl_floor::run("built-in", ttl_floor::DEFAULT, &Default::default()).unwrap();
    // Generated packets carry TTL 64: every one is under the floor of 65.
    assert_eq!(router.read_handler("f", "dropped").unwrap(), "10");
    let text = "InfiniteSource(LIMIT 10, STOP true) -> Strip(14) -> CheckIPHeader \
                -> f :: TtlFloor($MIN) -> c :: Counter -> Discard;";
    let params = [("MIN".to_string(), "64".to_string())].into();
    let router = ttl_floor::run("t", text, &params).unwrap();
    assert_eq!(router.read_handler("f", "dropped").unwrap(), "0");
    assert_eq!(router.read_handler("c", "count").unwrap(), "10");
    // Its arguments are checked as the SDK's own are.
    let e = ttl_floor::run(
        "t",
        "InfiniteSource -> TtlFloor -> Discard;",
        &Default::default(),
    )
    .err()
    .unwrap();
    assert!(e.contains("missing mandatory argument MIN"), "{e}");
}
