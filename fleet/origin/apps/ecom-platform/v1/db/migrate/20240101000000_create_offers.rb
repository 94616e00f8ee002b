# The demo's migration: run by the release hook `bin/rails db:migrate` (once per release).
class CreateOffers < ActiveRecord::Migration[6.1]
  def up
    create_table :offers do |t|
      t.string :title, null: false
    end
    execute "INSERT INTO offers (title) VALUES ('Free delivery over 50 EUR')"
  end

  def down
    drop_table :offers
  end
end
