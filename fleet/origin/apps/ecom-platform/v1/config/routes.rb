Rails.application.routes.draw do
  root "pages#show"
  get "/health", to: "health#show"
  get "/offers", to: "offers#index"
end
