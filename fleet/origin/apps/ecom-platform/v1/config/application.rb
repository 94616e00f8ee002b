require_relative "boot"

require "rails"
require "active_model/railtie"
require "active_record/railtie"
require "action_controller/railtie"
require "action_view/railtie"
require "sprockets/railtie"

Bundler.require(*Rails.groups)

module EcomPlatform
  class Application < Rails::Application
    config.load_defaults 6.1
    # The release folder is the deploy's, not the migration's to write into.
    config.active_record.dump_schema_after_migration = false
  end
end
