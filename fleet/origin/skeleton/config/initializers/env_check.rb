# /env-check says whether the host gave the app its secret PAYMENT_API_KEY (never its value): the
# check that the environment file ecom-infra writes reaches puma. A middleware, so every app of
# the skeleton has it without a route of its own.
class EnvCheck
  VARIABLE = "PAYMENT_API_KEY"

  def initialize(app)
    @app = app
  end

  def call(env)
    return @app.call(env) unless env["PATH_INFO"] == "/env-check"

    state = ENV[VARIABLE].to_s.empty? ? "missing" : "set"
    [200, { "Content-Type" => "text/plain" }, ["#{VARIABLE} #{state}\n"]]
  end
end

Rails.application.config.middleware.insert_before 0, EnvCheck
