//! Helpers shared by the regtest tests.
