//! The bridge between the generated `Guest` trait and [`Plugin`]: reads the
//! configuration from the host once per call and forwards panic messages to
//! the gateway's log before the instance traps.
//!
//! It must stay thin: everything a plugin does is testable on the host
//! through [`Plugin`] directly, without this module.

use crate::{Config, Delivery, Event, Plugin, PluginError};

/// Runs [`Plugin::handle`] with the subscription's configuration.
pub fn handle<P: Plugin>(event: Event) -> Result<Vec<Delivery>, PluginError> {
    install_panic_hook();
    P::handle(event, &Config::from_host())
}

/// Runs [`Plugin::validate_config`] with the subscription's configuration.
pub fn validate_config<P: Plugin>() -> Result<(), String> {
    install_panic_hook();
    P::validate_config(&Config::from_host())
}

/// A panic aborts the instance (plugins are built with `panic = "abort"`), so
/// the gateway only sees a trap; logging the message first tells the operator
/// why. Only on wasm: on the host the default hook already prints it.
fn install_panic_hook() {
    #[cfg(target_arch = "wasm32")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                crate::log::log(crate::Level::Error, &format!("plugin panicked: {info}"));
            }));
        });
    }
}

/// Exports a [`Plugin`] implementation as the component's `handle` and
/// `validate-config` functions. Invoke it once, at the root of the plugin's
/// crate (a `cdylib`).
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            struct OdooGatewayPluginExport;

            impl $crate::__private::Guest for OdooGatewayPluginExport {
                fn handle(
                    event: $crate::Event,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::Delivery>, $crate::PluginError>
                {
                    $crate::__private::handle::<$plugin>(event)
                }

                fn validate_config() -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::validate_config::<$plugin>()
                }
            }

            $crate::__private::export!(
                OdooGatewayPluginExport with_types_in $crate::__private::bindings
            );
        };
    };
}
