# config/deploy/fleet.rb of bench/capistrano.py: the stage `fleet`, the ecom-platform hosts of the local
# fleet (from config/bench.json); the first is primary (migrations run there).
BENCH.fetch("hosts").each_with_index do |address, index|
  server address, roles: %w[app web db], primary: index.zero?
end
