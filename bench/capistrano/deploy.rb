# config/deploy.rb of bench/capistrano.py: the fleet's ecom-platform deployed by Capistrano into its own
# folder, with its own puma (a systemd unit on its own port), from the same git origin as this project.
# Every value comes from config/bench.json, written by the benchmark from the stack's settings: this file
# holds no host, path or key of its own. The sha to deploy comes from CAP_BENCH_SHA (git:check reads it on a
# rollback too).
require "json"

BENCH = JSON.parse(File.read(File.expand_path("bench.json", __dir__)))

set :application, BENCH.fetch("app")
set :repo_url, BENCH.fetch("repo_url")
set :branch, -> { ENV.fetch("CAP_BENCH_SHA") { raise "CAP_BENCH_SHA is not set: the sha to deploy" } }
set :deploy_to, BENCH.fetch("deploy_to")
set :keep_releases, BENCH.fetch("keep_releases")
set :linked_dirs, BENCH.fetch("linked_dirs")
set :rails_env, BENCH.fetch("rails_env")
set :puma_unit, BENCH.fetch("puma_unit")
set :log_level, :info

# git on the hosts uses the deploy user's key and pinned host keys for the git host (the project's git-ssh
# step put them there) instead of Capistrano's wrapper, which turns host key checking off.
set :git_environmental_variables, {
  git_askpass: "/bin/echo",
  git_ssh_command: "ssh -F #{BENCH.fetch('git_ssh_config')}"
}

# Capistrano logs in as the deploy user with this run's own key, and checks each host's pinned key.
set :ssh_options, {
  user: BENCH.fetch("user"),
  keys: [BENCH.fetch("key")],
  keys_only: true,
  auth_methods: %w[publickey],
  use_agent: false,
  config: false,
  non_interactive: true,
  verify_host_key: :always,
  user_known_hosts_file: BENCH.fetch("known_hosts"),
  global_known_hosts_file: File::NULL
}

namespace :bench do
  desc "bundle install in the new release (capistrano-bundler's job; Debian's gems, no network)"
  task :bundle do
    on roles(:app) do
      within release_path do
        execute :bundle, "config", "set", "--local", "frozen", "true"
        execute :bundle, "config", "set", "--local", "without", "development:test"
        execute :bundle, "install", "--local", "--quiet"
      end
    end
  end

  desc "assets:precompile in the new release, on every deploy (capistrano-rails' job)"
  task :precompile do
    on roles(:web) do
      within release_path do
        with rails_env: fetch(:rails_env) do
          execute :bundle, "exec", "rake", "assets:precompile"
        end
      end
    end
  end

  desc "db:migrate on the primary server, on every deploy (capistrano-rails' job)"
  task :migrate do
    on primary(:db) do
      within release_path do
        with rails_env: fetch(:rails_env) do
          execute :bundle, "exec", "rake", "db:migrate"
        end
      end
    end
  end
end

namespace :puma do
  desc "Restart puma on every app server at once (its unit; the deploy user may run only this with sudo)"
  task :restart do
    on roles(:app), in: :parallel do
      execute :sudo, "-n", "/usr/bin/systemctl", "restart", fetch(:puma_unit)
    end
  end
end

before "deploy:updated", "bench:bundle"
after "deploy:updated", "bench:precompile"
after "bench:precompile", "bench:migrate"
# deploy:rollback runs deploy:publishing too, so a rollback restarts puma as a deploy does.
after "deploy:publishing", "puma:restart"
