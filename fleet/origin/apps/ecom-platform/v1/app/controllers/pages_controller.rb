class PagesController < ApplicationController
  def show
    @app = AppVersion::APP
    @version = AppVersion::NAME
  end
end
