require_relative "boot"

require "rails"
require "active_model/railtie"
require "action_controller/railtie"
require "action_view/railtie"
require "sprockets/railtie"

Bundler.require(*Rails.groups)

module EcomPlatform
  class Application < Rails::Application
    config.load_defaults 6.1
  end
end
