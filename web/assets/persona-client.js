/* placeholder: persona JS client */
