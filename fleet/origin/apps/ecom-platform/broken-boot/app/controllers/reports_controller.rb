# Deliberately broken: production eager-loads app/ while puma boots, and this constant
# does not exist, so the app never answers. Building the release does not load it.
class ReportsController < ApplicationController
  include ReportingHelpersThatWereNeverCommitted
end
