"""Python dependencies of node packs: requirements parsing, overrides, blacklists, the offline
wheelhouse, plans with conflict reports, export-deps/download-deps. See docs/deps.md.

Entry points: ``DependencyInstaller`` (deps.installer), ``deps_policy_from_config``
(deps.policy), ``export_requirements`` / ``download_deps`` (deps.export). Submodules are
imported explicitly; this package imports nothing at load time.
"""
