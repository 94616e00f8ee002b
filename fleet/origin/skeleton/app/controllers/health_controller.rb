# The path load balancers and the deploy's health check ask: 200 once the app has booted.
class HealthController < ActionController::Base
  def show
    render plain: "ok #{AppVersion::NAME}\n"
  end
end
