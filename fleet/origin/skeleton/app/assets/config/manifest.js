//= link_tree ../images
//= link_directory ../stylesheets .css
