# Bump to expire every precompiled asset at once.
Rails.application.config.assets.version = "1.0"
