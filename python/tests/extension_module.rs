//! The extension module the workspace's test build made for `scripts/test-python`: a shared
//! library beside this test's executable that exports the module's init function.

#[test]
fn the_extension_module_exports_its_init_function() {
    // target/<profile>/deps/<this test> -> target/<profile>/deps/lib_uniaudio.so
    let exe = std::env::current_exe().unwrap();
    let lib = exe.parent().unwrap().join("lib_uniaudio.so");
    let bytes = std::fs::read(&lib).unwrap_or_else(|e| panic!("{}: {e}", lib.display()));
    assert!(bytes.starts_with(b"\x7fELF"), "{} is not a shared library", lib.display());
    let init = b"PyInit__uniaudio";
    assert!(bytes.windows(init.len()).any(|w| w == init), "{} does not export PyInit__uniaudio", lib.display());
}
