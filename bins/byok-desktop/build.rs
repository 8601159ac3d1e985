//! Tauri's build step: the app's context (config, icon) for `generate_context!`.

fn main() {
    tauri_build::build();
}
