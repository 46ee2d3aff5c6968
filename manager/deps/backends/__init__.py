"""The uv and pip backends that ``DependencyInstaller`` (deps.installer) runs: each turns install
arguments into a command line and streams its output; ``detect.detect_installer`` picks one."""
