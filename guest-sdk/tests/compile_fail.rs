//! A wrong declaration is a compile error that points at the mistake: each
//! file in tests/ui must fail to compile with exactly its .stderr.

#[test]
fn wrong_declarations_point_at_the_mistake() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
