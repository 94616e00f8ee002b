# /offers reads the table the migration made; 503 where this server's database was never migrated.
class OffersController < ApplicationController
  def index
    unless Offer.table_exists?
      render plain: "offers: database not migrated on this server\n", status: :service_unavailable
      return
    end
    render plain: Offer.order(:id).pluck(:title).map { |title| "offer: #{title}\n" }.join
  end
end
