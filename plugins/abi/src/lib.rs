//! The plugin ABI shared by the appliance host and every plugin.
