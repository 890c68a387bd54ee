//! Host bindings for the `allama:action` world (`wit/action.wit`), generated
//! once here. Every import is async so a step waiting on I/O holds no thread.

wasmtime::component::bindgen!({
    world: "action",
    path: "../../wit",
    imports: { default: async },
    exports: { default: async },
});
