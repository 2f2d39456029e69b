//! The exec hosting of the Memcached plugin: JSON lines on stdin/stdout.

fn main() {
    adaptest_plugin_sdk::serve_stdio(memcached_plugin::Memcached);
}
