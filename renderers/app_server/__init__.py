"""App server steps: everything one host needs to run one Rails app behind nginx.

`app_server_steps(spec)` returns the host's steps in the order they must run:

    deploy-user  [git-ssh]  layout  app-env  ruby  puma-config  puma-unit  nginx-site  [datadog]
    [release-build  release-publish]           (only when the spec names a sha)

(`git-ssh` only when git goes over SSH, `datadog` only when enabled.) `components.app_server.spec_from_settings`
builds the spec from the stack settings.

Every script is bash, runs as root (the component wraps it in `sudo -n bash`) and drops
to the deploy user (`runuser`) for everything that touches app code: git, bundler, rake.
Config files travel inside their step's script, are validated by their own program
before they replace the old file, and are installed (and reloaded) only when changed.

The release is two steps so that the load balancers can drain this server around the
second one only: `release-build` does everything before the switch (fetch, materialise,
bundle, precompile) while the old release keeps serving; `release-publish` switches
`current`, restarts puma, checks health through nginx and rolls back on failure.

Directory layout on the host (Capistrano's, hardened): `<root>/<app>/` holds `releases/`,
`shared/`, `repo/` (bare mirror), `current` (link), `meta/` (per-release state written by
root), `revisions.log` and the deploy lock. The structure that decides what runs (the app
dir, `releases/`, `meta/`, `current`) is root's; what the app or its build must write
(`shared/`, `repo/`, each release's files) is the deploy user's.

Modules: `spec` (`AppServerSpec`: the values, their checks and the paths derived from them), `files` (the
config files: puma, its units, nginx, datadog, ssh, bundler, the environment file) and `steps` (the scripts,
in order).
"""
