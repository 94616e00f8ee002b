class DocsController < ApplicationController
  def index
    @version = AppVersion::NAME
  end
end
