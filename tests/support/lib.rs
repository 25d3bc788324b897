//! Shared support for the end-to-end tests in `tests/`: signal generators and helpers that
//! run without any file from outside the repository.
