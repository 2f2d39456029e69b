//! The exec hosting of the faulty test plugin.

fn main() {
    adaptest_plugin_sdk::serve_stdio(faulty_plugin::Faulty);
}
