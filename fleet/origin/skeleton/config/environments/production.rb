require "securerandom"

Rails.application.configure do
  config.cache_classes = true
  config.eager_load = true
  config.consider_all_requests_local = false
  config.action_controller.perform_caching = true

  # nginx serves public/ (and public/assets, a link to the release's shared assets).
  config.public_file_server.enabled = ENV["RAILS_SERVE_STATIC_FILES"].present?
  config.assets.compile = false

  config.log_level = :info
  config.log_tags = [:request_id]
  config.log_formatter = ::Logger::Formatter.new
  config.i18n.fallbacks = true
  config.active_support.deprecation = :notify

  # This fleet app keeps no sessions and signs no cookies, so a key made at boot is
  # enough when the host provides none; a real app gets SECRET_KEY_BASE from the
  # unit's environment file.
  config.secret_key_base = ENV.fetch("SECRET_KEY_BASE") { SecureRandom.hex(64) }
end
