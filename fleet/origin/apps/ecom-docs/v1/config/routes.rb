Rails.application.routes.draw do
  root "docs#index"
  get "/health", to: "health#show"
end
